"""Content-addressed on-disk cache for expensive per-sample arrays (faces, flow).

Keys hash the inputs' bytes and every parameter that shapes the result, so a changed frame or
setting can never return a stale array, and a rerun recomputes nothing already on disk. Writes
are atomic (temp file + rename): an interrupted run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from mekit.fileio import atomic_open


def file_digest(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


class FeatureCache:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            return np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return None

    def save(self, key: str, array: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
