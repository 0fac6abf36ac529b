"""Fold-batched training against the per-fold loop, for any registered model and device.

The 442-sample, 68-subject synthetic flow corpus of `loso_speed.py`, resized to the model's
input; a few LOSO folds trained both ways with the same schedule: one after another with
`mekit.train.loop.fit` (as `run_folds` with one worker does) and all at once with
`mekit.train.batched.fit_folds` (by default one group of the size a run takes,
`auto_folds_at_once`, at most 8: 5 for Off-ApexNet on a CPU). Prints the time per fold-epoch
of each, their ratio (measured in this one run) and the extrapolation to all 68 folds, after
one untimed epoch of each (kernels built for new shapes on first use), and the per-fold loop
again with torch's foreach Adam instead of the fused one (`train.fused_adam=false`).

It also prints each model's compute floor on the device: the matmul and convolution
FLOPs of one fold-epoch (forward and backward, counted by torch's FlopCounterMode) at the
device's own measured fp32 matmul rate. No schedule of the same arithmetic trains a fold-epoch
faster than that, so the per-fold loop's time over the floor is the most that stacking folds
(or any other batching) can gain there.

    python benchmarks/fold_batched.py               # off_apexnet and mobilevitv3_xxs, batch 32
    python benchmarks/fold_batched.py --model ststnet --epochs 20 --folds 8
    python benchmarks/fold_batched.py --device cuda --folds 68 --epochs 100 --plain-folds 4
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F
from loso_speed import LABELS, make_corpus, pick

from mekit.models import create_model, get_spec
from mekit.train.batched import auto_folds_at_once, fit_folds, predict_folds
from mekit.train.device import autocast_dtype, describe, resolve_device
from mekit.train.loop import TrainConfig, fit, predict_proba
from mekit.train.splits import Fold, loso_folds


def corpus_for(model: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    X, y, subjects, _ = make_corpus()
    spec = get_spec(model)
    if spec.input_kind != "flow":
        raise SystemExit(f"{model} takes {spec.input_kind} input; this benchmark feeds flow images")
    x = torch.from_numpy(X[:, : spec.channels] if spec.channels <= 3 else X)
    if spec.size != 28:
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False)
    return x.numpy().astype(np.float32), y, subjects


def matmul_gflops(device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """The device's sustained fp32 matmul rate: an n x n x n product, best of `reps`."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps + 1):  # the first is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def flops_per_sample(model: str, x: np.ndarray, batch: int) -> float:
    """Matmul and convolution FLOPs of one training step (forward and backward) per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    net = create_model(model, len(LABELS)).train()
    xb = torch.from_numpy(x[:batch])
    yb = torch.zeros(len(xb), dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(xb), yb).backward()
    return counter.get_total_flops() / len(xb)


def per_fold_loop(
    model: str, X: np.ndarray, y: np.ndarray, folds: list[Fold], config: TrainConfig
) -> float:
    """Milliseconds per fold-epoch of `folds` trained one after another (`fit`, `run_folds`)."""
    start = time.perf_counter()
    for fold in folds:
        cfg = dataclasses.replace(config, seed=config.seed + fold.index)
        result = fit(model, len(LABELS), X[fold.train_idx], y[fold.train_idx], cfg)
        predict_proba(result.model, X[fold.test_idx])
    return 1000 * (time.perf_counter() - start) / (len(folds) * config.epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", help="repeatable; default off_apexnet and mobilevitv3_xxs"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--folds", type=int, default=0, help="folds trained fold-batched (0: an auto group)"
    )
    parser.add_argument("--plain-folds", type=int, default=2, help="folds trained one by one")
    parser.add_argument("--batch", type=int, default=TrainConfig.batch_size, help="default 32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--precision", default="auto", help="train.precision (auto: bf16 on a GPU, else fp32)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = autocast_dtype(args.precision, device)
    print(f"device: {describe(device, dtype)}, {args.threads} threads")
    peak = matmul_gflops(device)
    print(f"fp32 matmul (2048^3): {peak:.0f} GFLOP/s")
    for model in args.model or ["off_apexnet", "mobilevitv3_xxs"]:
        X, y, subjects = corpus_for(model)
        folds = loso_folds(subjects)
        auto = auto_folds_at_once(create_model(model, len(LABELS)), device)
        at_once = args.folds or min(auto, 8)  # MobileViT: 16 folds need more than 24 GB
        batched_folds, plain_folds = pick(folds, at_once), pick(folds, args.plain_folds)
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch,
            num_threads=args.threads,
            device=args.device,
            precision=args.precision,
        )
        # One epoch of each first, untimed: oneDNN builds its kernels for each new shape on
        # first use, a cost a real run pays once, not once per fold
        warm = dataclasses.replace(config, epochs=1)
        fit(model, len(LABELS), X[plain_folds[0].train_idx], y[plain_folds[0].train_idx], warm)
        fit_folds(model, len(LABELS), X, y, batched_folds, warm)
        plain_ms = per_fold_loop(model, X, y, plain_folds, config)
        foreach_cfg = dataclasses.replace(config, fused_adam=False)
        foreach_ms = per_fold_loop(model, X, y, plain_folds, foreach_cfg)
        start = time.perf_counter()
        models = fit_folds(model, len(LABELS), X, y, batched_folds, config)
        predict_folds(models, X, batched_folds)
        batched_ms = 1000 * (time.perf_counter() - start) / (len(batched_folds) * args.epochs)
        full = len(folds) * args.epochs / 60000
        print(
            f"{model}: per-fold loop {plain_ms:.0f} ms per fold-epoch ({len(plain_folds)} folds), "
            f"fold-batched {batched_ms:.0f} ms ({len(batched_folds)} folds at once): "
            f"{plain_ms / batched_ms:.2f}x; {len(folds)} folds x {args.epochs} epochs: "
            f"{plain_ms * full:.1f} vs {batched_ms * full:.1f} min (extrapolated)"
        )
        print(
            f"{model}: per-fold loop with the foreach Adam (train.fused_adam=false) "
            f"{foreach_ms:.0f} ms per fold-epoch: the fused update is {foreach_ms / plain_ms:.2f}x"
        )
        n_train = np.mean([len(f.train_idx) for f in plain_folds])
        floor_ms = 1000 * n_train * flops_per_sample(model, X, args.batch) / (peak * 1e9)
        print(
            f"{model}: compute floor {floor_ms:.0f} ms per fold-epoch (matmul/conv FLOPs at "
            f"{peak:.0f} GFLOP/s): the per-fold loop is {plain_ms / floor_ms:.1f}x above it, the "
            f"most any batching of folds could gain here"
        )


if __name__ == "__main__":
    main()
