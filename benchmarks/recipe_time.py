"""How long a recipe trains at the full MEGC 2019 composite's shape: 442 samples, 68 subjects.

composite-dev (`../shared/realdata/composite-dev`) has 333 samples of 48 subjects; the 20
held-back subjects have the other 109. The timing corpus is composite-dev with its first 109
samples copied under 20 more subject names (dup00-dup19, row i to dup{i mod 20}), so a LOSO run
over it has the full composite's 442 samples and 68 folds. Its scores mean nothing (each copy's
original trains the fold that tests it); it measures time only. The script then runs

    mekit train --corpus TIMING --recipe NAME --protocol loso --out RUN

in a child process (pretraining, all folds and the model file, as a user's run does), and
prints the wall-clock minutes, the run's own breakdown, the child's peak memory, and whether it
fits `--limit` minutes (30: what `composite-best` must fit on 2 CPU cores).

    python benchmarks/recipe_time.py                          # composite-best
    python benchmarks/recipe_time.py --recipe composite-uv --keep /tmp/c442

Run it on a quiet machine: a second process on the same cores makes the minutes meaningless.
A corpus folder that is absent is skipped with a message (exit 0).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "composite-dev"
EXTRA_SUBJECTS = 20  # the composite's 68 subjects less composite-dev's 48
EXTRA_SAMPLES = 109  # its 442 samples less composite-dev's 333


def timing_corpus(
    source: Path, out: Path, subjects: int = EXTRA_SUBJECTS, samples: int = EXTRA_SAMPLES
) -> Path:
    """`out`: the generic-format corpus `source` plus copies of its first `samples` rows under
    `subjects` new subject names (`dupNN`, clip `CLIP_dI`), their files linked, not copied."""
    with open(source / "samples.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if len(rows) < samples:
        raise SystemExit(f"{source / 'samples.csv'} has {len(rows)} rows; {samples} are copied")
    out.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():  # flow/, apex/, ...: the rows name files under them
        if entry.name != "samples.csv" and not (out / entry.name).exists():
            os.symlink(entry.resolve(), out / entry.name)
    copies = [
        {**row, "subject": f"dup{i % subjects:02d}", "clip": f"{row['clip']}_d{i}"}
        for i, row in enumerate(rows[:samples])
    ]
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows + copies)
    return out


def run_recipe(corpus: Path, recipe: str, run_dir: Path) -> tuple[float, str]:
    """Train `recipe` LOSO on `corpus` in a child process: (wall seconds, its last stdout lines)."""
    argv = [sys.executable, "-m", "mekit", "train", "--corpus", str(corpus)]
    argv += ["--recipe", recipe, "--protocol", "loso", "--out", str(run_dir)]
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mekit train failed (exit {done.returncode}):\n{done.stdout}")
    return seconds, done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--recipe", default="composite-best")
    parser.add_argument("--limit", type=float, default=30.0, help="minutes it should fit in")
    parser.add_argument("--keep", type=Path, help="write the timing corpus and run here")
    args = parser.parse_args(argv)
    if not (args.corpus / "samples.csv").is_file():
        print(f"skipped: no corpus at {args.corpus} (a generic-format folder with samples.csv)")
        return 0
    if args.keep and (args.keep / "run").exists():  # mekit train would resume its folds
        print(f"{args.keep / 'run'} exists: a run there resumes, not times; remove it first")
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        corpus = timing_corpus(args.corpus, root / "corpus")
        with open(corpus / "samples.csv", newline="") as handle:
            n = sum(1 for _ in csv.DictReader(handle))
        seconds, stdout = run_recipe(corpus, args.recipe, root / "run")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    breakdown = [line for line in stdout.splitlines() if line.startswith("time:")]
    minutes = seconds / 60
    verdict = "fits" if minutes <= args.limit else "does NOT fit"
    print(f"{args.recipe}: LOSO on {n} samples ({args.corpus} and copies), {os.cpu_count()} CPUs")
    print(breakdown[0] if breakdown else "(no time line in the run's output)")
    print(f"peak memory of the run: {peak_mb:.0f} MB")
    print(f"{args.recipe}: {minutes:.1f} min wall clock; {verdict} in {args.limit:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
