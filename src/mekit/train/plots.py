"""Figures for run reports, drawn on the Agg canvas (no display, no pyplot global state).

matplotlib is imported inside the functions: it is slow to import, and LOSO worker processes
(which import `mekit.train`) never draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def save_confusion_png(
    confusion: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Confusion matrix (rows true, columns predicted) with every count written in its cell."""
    counts = np.asarray(confusion, dtype=np.int64)
    k = len(labels)
    fig = _figure(1.2 * k + 2.5, 1.1 * k + 2.0)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    dark = counts.max() * 0.5 if counts.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if counts[i, j] > dark else "black",
            )
    fig.tight_layout()
    fig.savefig(path)
    return path


def _mean_by_epoch(histories: Mapping[str, list[dict[str, float]]], key: str) -> np.ndarray:
    """Mean of `key` over the folds that reached each epoch (folds may stop early)."""
    longest = max((len(h) for h in histories.values()), default=0)
    sums, counts = np.zeros(longest), np.zeros(longest)
    for history in histories.values():
        for i, record in enumerate(history):
            if key in record:
                sums[i] += record[key]
                counts[i] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def save_learning_curves_png(
    histories: Mapping[str, list[dict[str, float]]], path: Path, val_label: str = "val loss"
) -> Path:
    """Mean training loss per epoch over folds, and validation loss where folds recorded it."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    train = _mean_by_epoch(histories, "train_loss")
    epochs = np.arange(1, len(train) + 1)
    ax.plot(epochs, train, label="train loss")
    val = _mean_by_epoch(histories, "val_loss")
    if np.isfinite(val).any():
        ax.plot(epochs, val, label=val_label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"loss (mean over {len(histories)} folds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path
