"""The cost of making one fold-batched step's batches, before any training: every fold's
samples gathered and augmented where they live (`mekit.train.batched.fold_batches`).

Each fold draws its augmentation from its own generator, on the CPU. The transforms then run
once on all folds' samples together; before, they ran fold by fold, one call per fold per
transform (kept here as `per_fold_batches`, the same batches, to time against). On a GPU each
call is a kernel launch, so with 68 folds that cost is paid 68 times a step.

Prints the milliseconds per step of both ways, measured in this one run, and what they add up
to over a LOSO (epochs x steps per epoch), for the flip alone (the default) and for flip,
rotation/zoom/shift, random erasing and mixup together.

    python benchmarks/batch_assembly.py                      # 68 folds, MobileViTv3-XXS input
    python benchmarks/batch_assembly.py --device cuda
    python benchmarks/batch_assembly.py --model off_apexnet --folds 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch

from mekit.models import get_spec
from mekit.models.registry import ModelSpec
from mekit.train.augment import mixup
from mekit.train.batched import fold_batches
from mekit.train.device import describe, resolve_device
from mekit.train.loop import TrainConfig, _flow_channels, augment_batch

SAMPLES = 442  # the composite's shape, as loso_speed.py
SETTINGS = {
    "flip": TrainConfig(),
    "flip+affine+erase+mixup": TrainConfig(
        augment_rotation_deg=10.0,
        augment_scale=0.1,
        augment_translate=0.05,
        augment_erase=0.5,
        augment_mixup=0.2,
    ),
}


def per_fold_batches(
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    picks: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator],
    config: TrainConfig,
    spec: ModelSpec,
    flow: tuple[int, int] | None = None,
    magnitude: tuple[int, ...] = (),
) -> tuple[torch.Tensor, ...]:
    """`fold_batches` as it was made before: each fold's batch augmented on its own."""
    device = x_all.device
    xs, ys, others, lams = [], [], [], []
    for idx, g in zip(picks, generators, strict=True):
        xf = augment_batch(x_all[idx.to(device)], config, spec, g, flow, magnitude)
        yf = y_all[idx]
        if config.augment_mixup > 0:
            xf, y_other, lam = mixup(xf, yf, g, config.augment_mixup)
            others.append(y_other)
            lams.append(lam)
        xs.append(xf)
        ys.append(yf)
    batches = [torch.stack(xs), torch.stack(ys).to(device)]
    if others:
        batches += [torch.stack(others).to(device), torch.tensor(lams, device=device)]
    return tuple(batches)


def time_step(
    make: Callable[..., tuple[torch.Tensor, ...]],
    model: str,
    config: TrainConfig,
    folds: int,
    device: torch.device,
    rounds: int,
) -> float:
    """Milliseconds per step of `make` for `folds` folds of `config.batch_size` samples of
    `model`'s input on `device` (after one untimed step)."""
    spec = get_spec(model)
    flow, magnitude = _flow_channels(spec)
    x_all = torch.randn(SAMPLES, *spec.input_shape, device=device)
    y_all = torch.randint(0, 3, (SAMPLES,))
    pick = torch.Generator().manual_seed(0)
    picks = [torch.randint(0, SAMPLES, (config.batch_size,), generator=pick) for _ in range(folds)]
    generators = [torch.Generator().manual_seed(f) for f in range(folds)]

    def step() -> None:
        make(x_all, y_all, picks, generators, config, spec, flow, magnitude)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    t0 = time.perf_counter()
    for _ in range(rounds):
        step()
    return 1000 * (time.perf_counter() - t0) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilevitv3_xxs")
    parser.add_argument("--folds", type=int, default=68)
    parser.add_argument("--epochs", type=int, default=100, help="of the LOSO extrapolated to")
    parser.add_argument("--rounds", type=int, default=20, help="timed steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    steps = args.epochs * -(-SAMPLES // TrainConfig.batch_size)  # the largest fold's, about
    print(
        f"{args.model}, {args.folds} folds x batch {TrainConfig.batch_size}, on "
        f"{describe(device, None)}, {args.threads} threads; LOSO: {args.epochs} epochs = "
        f"{steps} steps"
    )
    for name, config in SETTINGS.items():
        times = {
            way: time_step(make, args.model, config, args.folds, device, args.rounds)
            for way, make in (("per fold", per_fold_batches), ("all at once", fold_batches))
        }
        before, now = times["per fold"], times["all at once"]
        print(
            f"  {name:24s} per fold {before:7.2f} ms/step ({before * steps / 1000:6.1f} s a "
            f"LOSO)  all at once {now:7.2f} ms/step ({now * steps / 1000:6.1f} s)  "
            f"{before / now:.1f}x"
        )


if __name__ == "__main__":
    main()
