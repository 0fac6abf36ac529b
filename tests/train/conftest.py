from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_toy_flow(
    n_subjects: int, per_subject: int, seed: int = 0, amplitude: float = 1.0
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Noisy (N, 3, 28, 28) u/v/strain images; class 1 = positive mean u in a central patch,
    class 0 = negative. Returns X, y, subjects, ids."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    X = rng.normal(0.0, 0.5, (n, 3, 28, 28)).astype(np.float32)
    y = np.arange(n) % 2
    X[:, 0, 8:20, 8:20] += np.where(y == 1, amplitude, -amplitude)[:, None, None]
    subjects = [f"sub{i // per_subject:02d}" for i in range(n)]
    ids = [f"{subjects[i]}/clip{i:03d}" for i in range(n)]
    return X, y, subjects, ids


def assert_same_run(a, b) -> None:
    """Two cross-validation results (`LosoResult`) agree exactly: predictions, histories
    (their fold order too) and best epochs."""
    pd.testing.assert_frame_equal(a.predictions, b.predictions, check_exact=True)
    assert a.histories == b.histories
    assert list(a.histories) == list(b.histories)
    assert a.best_epochs == b.best_epochs


@pytest.fixture
def toy_flow():
    return make_toy_flow
