"""Grad-CAM class-activation maps for mekit's models (Selvaraju et al. 2017).

`grad_cam(model, x)` says which pixels of the input drove a class score: the target layer's
feature maps weighted by the spatially averaged gradient of the score, ReLU, scaled to [0, 1]
per sample and upsampled to the input's H x W.

Layouts the target layer may produce (B = batch of `x`):
  - (B, C, h, w): a 2D layer on one image per sample.
  - (B, C, t, h, w): a 3D layer; the map is averaged over t.
  - (B*T, C, h, w): a 2D layer run on every frame with the frames folded into the batch,
    batch-major (sample 0's T frames first), as mekit's per-frame CNNs do; treated as
    (B, C, T, h, w).
  - a 2D layer called T times per forward (a loop over frames): the calls are stacked as time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mekit.errors import MekitError


def last_conv(model: nn.Module) -> nn.Module:
    """The last `nn.Conv2d` or `nn.Conv3d` in `model.modules()` order."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)]
    if not convs:
        raise MekitError(f"{type(model).__name__} has no Conv2d or Conv3d layer; pass target_layer")
    return convs[-1]


class _Capture:
    """Forward hook keeping the layer's outputs as fresh leaves the score is differentiated to.

    The output is replaced by a clone of a detached leaf: the forward values are unchanged,
    the graph upstream of the layer is not built, and in-place ops after the layer stay legal.
    """

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def __call__(self, module: nn.Module, args: object, output: object) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise MekitError(
                f"grad_cam needs a target layer that returns a tensor, "
                f"{type(module).__name__} returns {type(output).__name__}"
            )
        leaf = output.detach().requires_grad_(True)
        self.outputs.append(leaf)
        return leaf.clone()


def _as_time_maps(activations: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Each tensor to (B, C, t, h, w) views; a list of per-frame calls stays a list."""
    first = activations[0]
    if first.dim() == 5 and len(activations) == 1:
        return [first]
    if first.dim() != 4:
        raise MekitError(
            f"grad_cam needs (N, C, h, w) or (B, C, t, h, w) feature maps, got {tuple(first.shape)}"
        )
    if len(activations) > 1:  # called once per frame
        if any(a.shape != first.shape for a in activations) or first.shape[0] != batch:
            raise MekitError("grad_cam: the target layer ran several times with other shapes")
        return [a.unsqueeze(2) for a in activations]
    n, c, h, w = first.shape
    if n % batch:
        raise MekitError(f"grad_cam: the target layer saw {n} maps for a batch of {batch}")
    return [first.reshape(batch, n // batch, c, h, w).transpose(1, 2)]


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module | None = None,
    class_idx: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Grad-CAM maps (B, H, W) in [0, 1] for input `x` (B, C, H, W) or (B, C, T, H, W).

    `target_layer` defaults to the model's `cam_layer` where it declares one (attention
    models, whose last conv is an attention conv), else its last Conv2d/Conv3d. `class_idx` is
    one class for all samples, a (B,) tensor of classes, or None for each sample's predicted
    class. The model runs in eval mode; each submodule's train/eval state is restored
    afterwards, the hook is removed, and no parameter's `.grad` is touched. A sample whose map
    is all zero (no positive evidence at that layer) gets zeros.
    """
    layer = target_layer if target_layer is not None else getattr(model, "cam_layer", None)
    if layer is None:
        layer = last_conv(model)
    modes = {m: m.training for m in model.modules()}
    capture = _Capture()
    handle = layer.register_forward_hook(capture)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x)
            if not capture.outputs:
                raise MekitError(
                    f"grad_cam: target layer {type(layer).__name__} did not run in the forward "
                    "pass; pass a layer of this model"
                )
            classes = _classes(class_idx, logits)
            score = logits.gather(1, classes.unsqueeze(1)).sum()
            grads = torch.autograd.grad(score, capture.outputs, allow_unused=True)
    finally:
        handle.remove()
        for module, training in modes.items():  # per module: mixed states survive
            module.training = training
    batch = x.shape[0]
    grads = [
        torch.zeros_like(a) if g is None else g for g, a in zip(grads, capture.outputs, strict=True)
    ]  # None: the score does not depend on this call's output
    activations = torch.cat(_as_time_maps(capture.outputs, batch), dim=2).detach()
    gradients = torch.cat(_as_time_maps(grads, batch), dim=2)
    weights = gradients.mean(dim=(2, 3, 4), keepdim=True)  # (B, C, 1, 1, 1)
    cam = F.relu((weights * activations).sum(dim=1)).mean(dim=1)  # (B, h, w)
    cam = F.interpolate(cam.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)
    cam = cam.squeeze(1).clamp_min(0)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), 0.0)


def _classes(class_idx: int | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """(B,) long tensor of the classes to explain, checked against the logits' shape."""
    b, k = logits.shape
    if class_idx is None:
        return logits.argmax(dim=1)
    classes = torch.as_tensor(class_idx, device=logits.device).long().reshape(-1)
    if classes.numel() == 1:
        classes = classes.expand(b)
    if classes.shape != (b,):
        raise MekitError(f"class_idx must be one class or {b} classes, got {classes.numel()}")
    if (classes < 0).any() or (classes >= k).any():
        raise MekitError(f"class_idx must be in 0..{k - 1}, got {classes.tolist()}")
    return classes
