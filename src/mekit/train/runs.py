"""Finished runs as data: re-score one from its predictions, aggregate seeds, compare runs.

A run folder is what `write_report` wrote. A multi-seed run folder holds `seed-N/` run folders
and a `seeds.json` with the mean and standard deviation over seeds. Everything here reads
predictions.csv and metrics.json only, so old runs stay comparable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mekit.errors import MekitError
from mekit.train.metrics import ClassificationMetrics, classification_metrics
from mekit.train.report import ORACLE_WARNING

SCORES = ("accuracy", "uf1", "uar")


@dataclass(frozen=True)
class RunScores:
    """One run's headline numbers (means over seeds, with standard deviations, if several)."""

    path: Path
    title: str
    model: str
    protocol: str
    selection: str
    oracle: bool
    n: int
    seeds: tuple[int, ...]
    mean: dict[str, float]
    std: dict[str, float]
    per_dataset: dict[str, dict[str, float]]


def seed_spread(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(mean, sample standard deviation) of one score over seeds; the deviation is 0 for one
    seed. Reports, `seeds.json` and model files all use this one definition."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def read_json(path: Path) -> dict[str, Any]:
    """A run folder's metrics.json or config.json; `MekitError` naming the folder if absent."""
    if not path.is_file():
        raise MekitError(f"{path} not found: is {path.parent} a mekit run folder?")
    return json.loads(path.read_text())


def rescore(run_dir: Path) -> ClassificationMetrics:
    """Metrics recomputed from the run's predictions.csv (the file is the source of truth)."""
    run_dir = Path(run_dir)
    path = run_dir / "predictions.csv"
    if not path.is_file():
        raise MekitError(f"{path} not found: is {run_dir} a mekit run folder?")
    predictions = pd.read_csv(path)
    labels = read_json(run_dir / "metrics.json")["labels"]
    return classification_metrics(predictions["true"], predictions["pred"], labels)


def seed_dirs(run_dir: Path) -> list[Path]:
    return sorted(
        (p for p in Path(run_dir).glob("seed-*") if (p / "metrics.json").is_file()),
        key=lambda p: int(p.name.removeprefix("seed-")),
    )


def run_scores(run_dir: Path) -> RunScores:
    """The scores of a single run folder or of a multi-seed run folder."""
    run_dir = Path(run_dir)
    seeds = seed_dirs(run_dir)
    dirs = seeds or [run_dir]
    metrics = [read_json(d / "metrics.json") for d in dirs]
    first = metrics[0]
    values = {k: np.array([m["overall"][k] for m in metrics], dtype=float) for k in SCORES}
    config = read_json(dirs[0] / "config.json") if (dirs[0] / "config.json").is_file() else {}
    per_dataset: dict[str, dict[str, float]] = {}
    for name in first.get("per_dataset", {}):
        per_dataset[name] = {
            k: float(np.mean([m["per_dataset"][name][k] for m in metrics])) for k in SCORES
        }
    return RunScores(
        path=run_dir,
        title=first["title"],
        model=first["model"],
        protocol=str(config.get("protocol", "loso")),
        selection=first["selection"],
        oracle=bool(first["oracle"]),
        n=int(first["overall"]["n"]),
        seeds=tuple(int(d.name.removeprefix("seed-")) for d in seeds),
        mean={k: seed_spread(v)[0] for k, v in values.items()},
        std={k: seed_spread(v)[1] for k, v in values.items()},
        per_dataset=per_dataset,
    )


def write_seed_summary(out: Path, title: str, seeds: Sequence[int], dirs: Sequence[Path]) -> Path:
    """`out/seeds.json` and `out/summary.md`: mean and std over the seeds' runs."""
    out = Path(out)
    scores = run_scores(out)
    per_seed = {
        str(s): read_json(Path(d) / "metrics.json")["overall"]
        for s, d in zip(seeds, dirs, strict=True)
    }
    (out / "seeds.json").write_text(
        json.dumps(
            {
                "title": title,
                "seeds": list(seeds),
                "mean": scores.mean,
                "std": scores.std,
                "per_seed": per_seed,
                "per_dataset_mean": scores.per_dataset,
            },
            indent=2,
        )
        + "\n"
    )
    heading = f"{title} — {ORACLE_WARNING}" if scores.oracle else title
    rows = [
        f"| {s} | {v['accuracy']:.4f} | {v['uf1']:.4f} | {v['uar']:.4f} |"
        for s, v in per_seed.items()
    ]
    lines = [
        f"# {heading}",
        "",
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); each seed's full report is in "
        "`seed-N/`. Mean ± standard deviation over seeds:",
        "",
        "| Accuracy | UF1 | UAR |",
        "|---|---|---|",
        "| " + " | ".join(f"{scores.mean[k]:.4f} ± {scores.std[k]:.4f}" for k in SCORES) + " |",
        "",
        "| Seed | Accuracy | UF1 | UAR |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    path = out / "summary.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def compare_table(run_dirs: Sequence[Path]) -> str:
    """A Markdown table of runs side by side (mean ± std where a run has several seeds)."""
    if not run_dirs:
        raise MekitError("give at least one run folder to compare")
    rows = []
    for d in run_dirs:
        s = run_scores(Path(d))
        cell = {
            k: f"{s.mean[k]:.4f}" + (f" ± {s.std[k]:.4f}" if len(s.seeds) > 1 else "")
            for k in SCORES
        }
        selection = f"{s.selection} (ORACLE: not valid)" if s.oracle else s.selection
        rows.append(
            [
                str(d),
                s.model,
                s.protocol,
                selection,
                str(s.n),
                str(len(s.seeds) or 1),
                cell["accuracy"],
                cell["uf1"],
                cell["uar"],
            ]
        )
    header = ["run", "model", "protocol", "selection", "n", "seeds", "accuracy", "UF1", "UAR"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
