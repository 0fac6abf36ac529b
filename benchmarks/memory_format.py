"""Training speed in torch's default (contiguous, NCHW) memory layout against channels-last (NHWC).

Every registered network (one image per sample, (C, H, W), or a clip, (C, T, H, W): there
channels-last means NDHWC inputs and 3-D convolution weights, and NHWC 2-D ones), trained by
`mekit.train.loop.fit` on random inputs of its shape (96 samples, batch 32, 3 classes) with
`train.memory_format` "contiguous" and then "channels_last", alternately for a few rounds after
one untimed epoch of each (oneDNN builds its kernels for each new shape on first use); prints
the best time per training step of each, their ratio, and which layout `train.memory_format`
"auto" picks for the network (its `ModelSpec.channels_last`, set where this benchmark measured
it faster in every run on one thread, 1.15x or more; Off-ApexNet, 1.11-1.12x, is left
contiguous to keep the composite recipes' floats). The larger networks' ratios vary by a few
hundredths from run to run; `--rounds 5` steadies them.

    python benchmarks/memory_format.py                        # every network, 1 thread
    python benchmarks/memory_format.py --model mobilevitv3_xxs --threads 2

One thread is what each of the 2 worker processes of a LOSO run gets on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from mekit.models import get_spec, list_models
from mekit.train.loop import TrainConfig, fit

SAMPLES, CLASSES = 96, 3


def networks() -> list[str]:
    """The registered networks, averaging wrappers and the AU net left out (they train their
    members, or through another trainer)."""
    return [
        spec.name
        for spec in list_models()
        if not spec.name.endswith("_average") and spec.name not in ("flow_blend", "aunet")
    ]


def step_ms(model: str, X: np.ndarray, y: np.ndarray, config: TrainConfig) -> float:
    """Milliseconds per training step of `fit` over `config.epochs` epochs."""
    start = time.perf_counter()
    fit(model, CLASSES, X, y, config)
    steps = config.epochs * -(-len(X) // config.batch_size)
    return 1000 * (time.perf_counter() - start) / steps


def compare(model: str, epochs: int, rounds: int, threads: int) -> tuple[float, float]:
    """(contiguous, channels-last) best ms per step of `model`."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(SAMPLES, *get_spec(model).input_shape)).astype(np.float32)
    y = rng.integers(0, CLASSES, SAMPLES)
    config = TrainConfig(epochs=epochs, batch_size=32, num_threads=threads, device="cpu")
    layouts = {
        f: dataclasses.replace(config, memory_format=f) for f in ("contiguous", "channels_last")
    }
    for cfg in layouts.values():  # untimed: kernels built for each new shape
        fit(model, CLASSES, X, y, dataclasses.replace(cfg, epochs=1))
    best = dict.fromkeys(layouts, float("inf"))
    for _ in range(rounds):
        for name, cfg in layouts.items():
            best[name] = min(best[name], step_ms(model, X, y, cfg))
    return best["contiguous"], best["channels_last"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="repeatable; default every network")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), {SAMPLES} samples, batch 32, ms per training step")
    for model in args.model or networks():
        plain, nhwc = compare(model, args.epochs, args.rounds, args.threads)
        auto = "channels_last" if get_spec(model).channels_last else "contiguous"
        print(
            f"{model:26s} contiguous {plain:8.1f}  channels_last {nhwc:8.1f}  "
            f"{plain / nhwc:.2f}x  (auto: {auto})",
            flush=True,
        )


if __name__ == "__main__":
    main()
