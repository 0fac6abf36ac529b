"""Write a cross-validation run's results to a folder: config, predictions, metrics, figures.

Files (all in `run_dir`): config.json, predictions.csv (sorted by id), metrics.json,
summary.md (tables ready to paste into a paper), confusion.png, learning_curves.png,
skipped.csv (id, reason). Metrics come from all folds' predictions concatenated; when the
predictions carry a `dataset` column with several corpora (the composite protocol), each
corpus is also scored from the same predictions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import mekit
from mekit.errors import MekitError
from mekit.train.loso import LosoResult
from mekit.train.metrics import ClassificationMetrics, classification_metrics
from mekit.train.plots import save_confusion_png, save_learning_curves_png

log = logging.getLogger(__name__)

ORACLE_WARNING = "TEST-ORACLE EPOCH SELECTION (not a valid estimate)"


@dataclass(frozen=True)
class ReportPaths:
    """Where `write_report` put each file."""

    run_dir: Path
    config: Path
    predictions: Path
    metrics: Path
    summary: Path
    confusion: Path
    learning_curves: Path
    skipped: Path


def _selection_text(result: LosoResult) -> str:
    if result.selection:
        return result.selection
    cfg = result.config
    if cfg.selection == "val-split":
        return (
            f"early stopping on validation subjects drawn from the training subjects only "
            f"({cfg.val_fraction:.0%}, patience {cfg.patience}), best-validation-loss weights"
        )
    if cfg.selection == "test-oracle":
        return f"per-fold epoch with the best TEST-subject accuracy ({ORACLE_WARNING})"
    return f"last epoch of {cfg.epochs}, no model selection"


def describe_protocol(protocol: str, result: LosoResult, k: int = 5) -> str:
    """How the folds of `result` were formed, in words, for `protocol`."""
    p = result.predictions
    n_folds = p["fold"].nunique()
    if protocol == "composite":
        return (
            f"MEGC 2019 composite: leave-one-subject-out over the union of corpora, "
            f"{n_folds} folds (one per subject)"
        )
    if protocol == "cross-dataset":
        return f"leave-one-corpus-out (cross-dataset), {n_folds} folds (one per corpus)"
    if protocol == "kfold":
        return f"{k}-fold cross-validation of whole subjects (stratified, no subject in two folds)"
    return f"Leave-one-subject-out, {n_folds} folds (one per subject)"


def protocol_line(result: LosoResult, protocol: str | None = None) -> str:
    """One sentence describing the evaluation protocol of `result`."""
    p = result.predictions
    folds = protocol or describe_protocol("loso", result)
    return (
        f"{folds}, "
        f"{len(p)} samples, {len(result.labels)} classes; model `{result.model_name}`; "
        f"model selection: {_selection_text(result)}. Accuracy, UF1 and UAR over all folds' "
        f"predictions concatenated (MEGC definitions)."
    )


def _per_subject(predictions: pd.DataFrame) -> dict[str, dict[str, float]]:
    correct = predictions["true"] == predictions["pred"]
    grouped = correct.groupby(predictions["subject"])
    return {str(s): {"accuracy": float(g.mean()), "n": int(len(g))} for s, g in grouped}


def _per_dataset(predictions: pd.DataFrame, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    if "dataset" not in predictions or predictions["dataset"].nunique() < 2:
        return {}
    out = {}
    for name, part in predictions.groupby("dataset"):
        m = classification_metrics(part["true"], part["pred"], labels)
        out[str(name)] = {"accuracy": m.accuracy, "uf1": m.uf1, "uar": m.uar, "n": m.n}
    return out


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _keyed_rows(
    table: Mapping[str, Mapping[str, Any]], count: str, scores: Sequence[str]
) -> list[list[Any]]:
    """One row per key of `table`: the key, its `count`, then its `scores` to four decimals."""
    return [[key, v[count], *(f"{v[s]:.4f}" for s in scores)] for key, v in table.items()]


def _note(value: Any) -> str:
    """A Notes value for people: floats to four decimals, a dict as `key value, ...`."""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_note(v)}" for k, v in value.items())
    return str(value)


def _section(
    title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], empty: str | None = None
) -> list[str]:
    """A summary section: `## title`, then the table (or `empty` when there are no rows)."""
    table = empty if empty is not None and not rows else _md_table(header, rows)
    return [f"## {title}", "", table, ""]


def _summary_md(
    title: str,
    result: LosoResult,
    m: ClassificationMetrics,
    per_subject: dict[str, dict[str, float]],
    per_dataset: dict[str, dict[str, Any]],
    skipped: Sequence[tuple[str, str]],
    extra: dict[str, Any],
    stamp: str,
    protocol: str | None,
) -> str:
    heading = f"{title} — {ORACLE_WARNING}" if result.oracle else title
    parts = [f"# {heading}", "", protocol_line(result, protocol), ""]
    if result.oracle:
        parts += [
            f"> **Warning:** {ORACLE_WARNING}. Each fold kept the epoch with the best accuracy "
            "on its own test subject; these figures are optimistic and only for comparison "
            "with published codes that did the same.",
            "",
        ]
    overall = [[f"{m.accuracy:.4f}", f"{m.uf1:.4f}", f"{m.uar:.4f}", m.n]]
    parts += _section("Overall", ["Accuracy", "UF1", "UAR", "n"], overall)
    if per_dataset:
        parts += _section(
            "Per corpus (from the same predictions)",
            ["Corpus", "n", "Accuracy", "UF1", "UAR"],
            _keyed_rows(per_dataset, "n", ("accuracy", "uf1", "uar")),
        )
    parts += _section(
        "Per class",
        ["Class", "Support", "Precision", "Recall", "F1"],
        _keyed_rows(m.per_class, "support", ("precision", "recall", "f1")),
    )
    parts += _section(
        "Per subject", ["Subject", "n", "Accuracy"], _keyed_rows(per_subject, "n", ("accuracy",))
    )
    parts += _section(
        "Confusion matrix (rows true, columns predicted)",
        ["true \\ pred", *m.labels],
        [[lab, *row] for lab, row in zip(m.labels, m.confusion, strict=True)],
    )
    parts += _section("Skipped samples", ["id", "reason"], skipped, empty="None.")
    if extra:
        parts += _section("Notes", ["key", "value"], [(k, _note(v)) for k, v in extra.items()])
    parts += [f"mekit {mekit.__version__}, {stamp}.", ""]
    return "\n".join(parts)


def write_report(
    run_dir: Path,
    *,
    title: str,
    config: dict[str, Any],
    result: LosoResult,
    labels: Sequence[str],
    skipped: Sequence[tuple[str, str]] = (),
    extra: dict[str, Any] | None = None,
    protocol: str | None = None,
) -> ReportPaths:
    """Write the report files of `result` into `run_dir` (created if missing).

    `config` is the resolved configuration of the whole run, written as given so the run can
    be repeated; `skipped` lists (sample id, reason) pairs left out before training; `extra`
    key/values go into metrics.json and the summary's notes; `protocol` describes how the
    folds were formed (default: leave-one-subject-out).
    """
    labels = [str(lab) for lab in labels]
    if set(labels) != set(result.labels):
        raise MekitError(f"labels {labels} differ from the run's labels {list(result.labels)}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    skipped = [(str(i), str(r)) for i, r in skipped]
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    paths = ReportPaths(
        run_dir=run_dir,
        config=run_dir / "config.json",
        predictions=run_dir / "predictions.csv",
        metrics=run_dir / "metrics.json",
        summary=run_dir / "summary.md",
        confusion=run_dir / "confusion.png",
        learning_curves=run_dir / "learning_curves.png",
        skipped=run_dir / "skipped.csv",
    )
    predictions = result.predictions.sort_values("id", kind="stable").reset_index(drop=True)
    m = classification_metrics(predictions["true"], predictions["pred"], labels)
    per_subject = _per_subject(predictions)
    per_dataset = _per_dataset(predictions, labels)

    paths.config.write_text(json.dumps(config, indent=2, default=str) + "\n")
    predictions.to_csv(paths.predictions, index=False)
    metrics = {
        "title": title,
        "mekit_version": mekit.__version__,
        "timestamp": stamp,
        "model": result.model_name,
        "protocol": protocol_line(result, protocol),
        "selection": result.config.selection,
        "oracle": result.oracle,
        "overall": {"accuracy": m.accuracy, "uf1": m.uf1, "uar": m.uar, "n": m.n},
        "labels": list(m.labels),
        "per_class": m.per_class,
        "confusion": m.confusion,
        "per_subject": per_subject,
        "per_dataset": per_dataset,
        "best_epochs": dict(result.best_epochs),
        "n_skipped": len(skipped),
        "extra": extra,
    }
    paths.metrics.write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    paths.summary.write_text(
        _summary_md(title, result, m, per_subject, per_dataset, skipped, extra, stamp, protocol),
        encoding="utf-8",
    )
    save_confusion_png(
        m.confusion, m.labels, paths.confusion, title=ORACLE_WARNING if result.oracle else title
    )
    save_learning_curves_png(
        result.histories,
        paths.learning_curves,
        val_label="test-subject loss (oracle)" if result.oracle else "val loss",
    )
    pd.DataFrame(skipped, columns=["id", "reason"]).to_csv(paths.skipped, index=False)
    log.info("report written to %s (UF1 %.4f, UAR %.4f)", run_dir, m.uf1, m.uar)
    return paths
