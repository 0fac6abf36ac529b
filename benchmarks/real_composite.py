"""Recognition on real composite-style data: mekit's recipes (and any models) side by side.

Reads a folder in mekit's generic format with a flow image (and/or apex crop) per sample, by
default `../shared/realdata/composite-dev` (the MEGC 2019 composite, 48 of its 68 subjects;
see its README: benchmarks may read it, nothing trained on it is shipped). Each recipe and
model runs under the composite protocol (LOSO over all subjects, `--allow-missing`, the
listed samples found), honest selection only (fixed schedules; no recipe or model may pick
epochs on test subjects), and one table is printed: UF1 and UAR overall, UF1 per corpus,
minutes.

One seed moves a recipe's UF1 by a few hundredths here (333 samples), so `--seeds 0,1,2` runs
every row once per seed and ends with a summary: each row's mean and range over the seeds, and
its paired difference from the first row at the same seed (mean, and per seed). With `--out`,
each seed's runs have their own folders, and an interrupted run resumes from its fold
checkpoints.

    python benchmarks/real_composite.py                       # every shipped recipe, LOSO
    python benchmarks/real_composite.py --quick               # 5 folds of whole subjects
    python benchmarks/real_composite.py --recipes composite-best,ststnet-default
    python benchmarks/real_composite.py --recipes ststnet-default,composite-best --seeds 0,1,2
    python benchmarks/real_composite.py --models off_apexnet --recipes ststnet-default

A folder that is absent is skipped with a message (exit 0): a user's clone has no real data.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mekit.config import merge
from mekit.pipeline import ExperimentConfig, run_blend, run_experiment
from mekit.train.recipes import load_recipe, recipe_names
from mekit.train.runs import run_scores

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "composite-dev"
CORPORA = ("casme2", "samm", "smic")


def entries(recipes: list[str], models: list[str]) -> list[tuple[str, dict]]:
    """(row name, experiment settings) for each recipe, then each plain model."""
    out = [(f"recipe {name}", load_recipe(name).settings) for name in recipes]
    out += [(f"model {name}", {"model": name, "engine": "auto"}) for name in models]
    return out


def protocol(quick: bool, k: int) -> dict:
    if quick:
        return {"protocol": "kfold", "k": k}
    return {"protocol": "composite", "allow_missing": True}


def run_row(
    name: str, root: Path, run_dir: Path, settings: dict, seed: int
) -> tuple[float, str] | None:
    """Run one row's experiment at `seed` into `run_dir`: (its UF1, its table line), or None
    (with a message) when its selection is not honest."""
    config = ExperimentConfig.from_dict(merge(settings, {"train": {"seed": seed}}))
    if config.train.selection != "fixed":
        print(f"{name}: selection {config.train.selection!r} is not honest here; skipped")
        return None
    t0 = time.perf_counter()
    run = run_blend if config.blend.active else run_experiment
    run(root, run_dir, config, progress=False)
    minutes = (time.perf_counter() - t0) / 60
    s = run_scores(run_dir)
    per = [f"{s.per_dataset[c]['uf1']:.3f}" if c in s.per_dataset else "-" for c in CORPORA]
    line = (
        f"| {name} | {seed} | {s.mean['uf1']:.3f} | {s.mean['uar']:.3f} "
        f"| {' | '.join(per)} | {s.n} | {minutes:.1f} |"
    )
    return s.mean["uf1"], line


def summary(uf1: dict[str, dict[int, float]], seeds: Sequence[int]) -> list[str]:
    """The multi-seed summary table: per row (name -> seed -> UF1, every seed present; the
    first row is the reference), the mean UF1, its range, and the paired difference from the
    reference at each seed, with their mean."""
    names = list(uf1)
    ref = uf1[names[0]]
    per_seed = " | ".join(f"diff seed {s}" for s in seeds)
    header = f"| run | mean UF1 | range | mean diff vs {names[0]} | {per_seed} |"
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in names:
        values = [uf1[name][s] for s in seeds]
        diffs = [uf1[name][s] - ref[s] for s in seeds]
        cells = " | ".join(f"{d:+.3f}" for d in diffs)
        rows.append(
            f"| {name} | {sum(values) / len(values):.3f} | {min(values):.3f}-{max(values):.3f} "
            f"| {sum(diffs) / len(diffs):+.3f} | {cells} |"
        )
    return rows


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(
            f"--seeds wants comma-separated integers, e.g. 0,1,2; got {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds wants distinct integers, e.g. 0,1,2; got {text!r}")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default=str(DEFAULT_DIR), help="generic-format folder")
    parser.add_argument("--recipes", help="comma-separated recipe names (default: all shipped)")
    parser.add_argument("--models", default="", help="comma-separated model names to add")
    parser.add_argument("--quick", action="store_true", help="k folds of whole subjects, not LOSO")
    parser.add_argument("--k", type=int, default=5, help="folds of --quick (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", help="comma-separated seeds, each row once per seed (0,1,2)")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args(argv)

    root = Path(args.dir)
    if not (root / "samples.csv").is_file():
        print(f"skipped: no composite-style corpus at {root} (samples.csv); give its folder")
        return 0
    logging.basicConfig(level=logging.WARNING)
    recipes = args.recipes.split(",") if args.recipes else recipe_names()
    models = [m for m in args.models.split(",") if m]
    out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="real_composite_"))
    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    mode = f"{args.k}-fold on whole subjects (--quick)" if args.quick else "LOSO (composite)"
    said = ("seeds " if len(seeds) > 1 else "seed ") + ", ".join(map(str, seeds))
    print(f"{root}: {mode}, {said}, fixed schedules (no test-subject selection)")
    header = "| run | seed | UF1 | UAR | " + " | ".join(f"UF1 {c}" for c in CORPORA)
    header += " | n | min |"
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    uf1: dict[str, dict[int, float]] = {}
    for seed in seeds:
        for name, settings in entries(recipes, models):
            kind, _, what = name.partition(" ")
            run_dir = out_root / f"{kind}-{Path(what).stem}"  # a recipe file's stem, not its path
            if len(seeds) > 1:
                run_dir = run_dir.with_name(f"{run_dir.name}-seed{seed}")
            row = run_row(name, root, run_dir, merge(settings, protocol(args.quick, args.k)), seed)
            if row is None:
                continue
            value, line = row
            uf1.setdefault(name, {})[seed] = value
            rows.append(line)
            print(line, flush=True)
    print("\n".join(["", *rows]))
    if len(seeds) > 1 and uf1:
        print("\n".join(["", *summary(uf1, seeds)]))
    print(f"run folders: {out_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
