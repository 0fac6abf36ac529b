"""The Adam optimiser every fold trainer builds: torch's fused kernel where the build has one.

`torch.optim.Adam(fused=True)` updates all parameters in one kernel; the default (foreach) runs
several whole-tensor operations per step, each allocating a temporary the size of the largest
parameter. On 2 CPU cores that made Adam half of an Off-ApexNet training step (its 1568 x 1024
dense layer); fused, its folds train 1.25-1.39x faster (`benchmarks/fold_batched.py`). Same
arithmetic, rounded differently: parameters drift from the foreach update by about 1e-7 per
step, so a network trained before `train.fused_adam` existed is trained again as another draw
of the same training, not to the same floats; `train.fused_adam=false` gives the foreach
update back, float for float.

torch builds before 2.4 have no fused kernel on the CPU; there the foreach update is used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

log = logging.getLogger(__name__)


def make_adam(
    params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0, fused: bool = True
) -> torch.optim.Adam:
    """Adam over `params`: fused where this torch build has a fused kernel for their device
    (and `fused`), else torch's default (foreach) update."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError) as err:  # no fused kernel for this device or build
            log.debug("fused Adam unavailable (%s); using the foreach update", err)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
