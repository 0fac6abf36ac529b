"""The pieces of `benchmarks/batch_assembly.py` (no benchmark is run)."""

from __future__ import annotations

import pytest
import torch

from benchmark_script import load_benchmark
from mekit.models import get_spec
from mekit.train.batched import fold_batches
from mekit.train.loop import _flow_channels

bench = load_benchmark("batch_assembly")


@pytest.mark.parametrize("setting", sorted(bench.SETTINGS))
def test_the_way_it_times_against_makes_the_same_batches(setting):
    # the two ways timed must make the same batches, or the ratio compares different work
    config, spec = bench.SETTINGS[setting], get_spec("off_apexnet")
    flow, magnitude = _flow_channels(spec)
    x, y = torch.randn(20, *spec.input_shape), torch.arange(20) % 3
    picks = [torch.randperm(20)[: config.batch_size // 4] for _ in range(3)]
    made = []
    for make in (bench.per_fold_batches, fold_batches):
        gens = [torch.Generator().manual_seed(f) for f in range(3)]
        made.append(make(x, y, picks, gens, config, spec, flow, magnitude))
    assert len(made[0]) == len(made[1]) == (4 if config.augment_mixup else 2)
    assert all(torch.equal(a, b) for a, b in zip(*made, strict=True))


def test_time_step_times_a_step():
    config = bench.SETTINGS["flip"]
    ms = bench.time_step(bench.fold_batches, "ststnet", config, 2, torch.device("cpu"), 1)
    assert ms > 0
