"""Classification losses on logits (B, K) and integer targets (B,), and class weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mekit.errors import MekitError

LossKind = Literal["ce", "focal"]


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): mean over the batch of -alpha_t (1 - p_t)^gamma log p_t.

    p_t is the softmax probability of the true class t. `gamma` >= 0 is the focusing
    parameter; `alpha` an optional per-class weight (K,), alpha_t = alpha[t] (e.g. the
    "balanced" class weights, or `TrainConfig.focal_alpha`). The mean is over samples, not
    normalised by the summed alpha (unlike weighted cross-entropy). gamma = 0 and alpha = None
    is plain cross-entropy. Down-weights easy samples, which helps with the rare classes of ME
    corpora.
    """

    def __init__(
        self, gamma: float = 2.0, alpha: torch.Tensor | Sequence[float] | None = None
    ) -> None:
        super().__init__()
        if not gamma >= 0:
            raise MekitError(f"focal_gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        if alpha is not None:
            alpha = torch.as_tensor(alpha, dtype=torch.float32)
            if alpha.dim() != 1 or not bool(torch.isfinite(alpha).all()) or bool((alpha < 0).any()):
                raise MekitError(
                    f"focal alpha must be one finite non-negative weight per class, got {alpha}"
                )
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.alpha is not None and self.alpha.shape[0] != logits.shape[1]:
            raise MekitError(
                f"focal alpha has {self.alpha.shape[0]} values for {logits.shape[1]} classes"
            )
        log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        # clamped away from 0: d/dp (1 - p)^gamma is infinite at p = 1 for gamma < 1
        loss = -((1.0 - log_p.exp()).clamp_min(1e-12) ** self.gamma) * log_p
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


def balanced_class_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class weights n / (K * n_c) ("balanced", as in scikit-learn), float32 (K,).

    Classes absent from `y` get weight 0: they have no samples to weight anyway.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def make_loss(
    kind: str,
    gamma: float = 2.0,
    class_weights: np.ndarray | None = None,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """The loss module for `kind` ("ce" or "focal"), optionally class-weighted.

    Weighted cross-entropy is normalised by the summed weights (torch's convention); focal
    loss uses the weights as its per-class alpha and averages over the batch.
    `label_smoothing` eps (cross-entropy only; Szegedy et al. 2016): the target is
    (1 - eps) one-hot + eps / K (`smoothed_cross_entropy`).
    """
    weight = (
        torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    )
    if label_smoothing and kind != "ce":
        raise MekitError(f"label smoothing is for cross-entropy, not the {kind!r} loss")
    if kind == "ce":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if kind == "focal":
        return FocalLoss(gamma=gamma, alpha=weight)
    raise MekitError(f"unknown loss {kind!r}; use 'ce' or 'focal'")


def smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float
) -> torch.Tensor:
    """Class-weighted cross-entropy with label smoothing eps, written out as torch's
    `nn.CrossEntropyLoss(weight, label_smoothing=eps)` computes it (for code that cannot use
    the module, e.g. under vmap): (1 - eps) NLL(y) + eps / K sum_c w_c (-log p_c), both
    normalised by the summed weights of the targets. `weight` (K,): all ones when unweighted.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    norm = weight[target].sum()
    nll = -(weight[target] * log_p.gather(1, target[:, None]).squeeze(1)).sum() / norm
    if not eps:
        return nll
    smooth = -(log_p * weight).sum() / norm
    return (1.0 - eps) * nll + eps / logits.shape[1] * smooth
