"""The pieces of `benchmarks/memory_format.py` (no benchmark is run)."""

from __future__ import annotations

from benchmark_script import load_benchmark
from mekit.models import get_spec

bench = load_benchmark("memory_format")


def test_it_times_every_single_image_network_and_only_those():
    names = bench.image_models()
    assert {"mobilevitv3_xxs", "off_apexnet", "ststnet", "resnet18"} <= set(names)
    assert all(len(get_spec(n).input_shape) == 3 for n in names)
    assert not any(n.endswith("_average") or n in ("aunet", "flow_blend") for n in names)


def test_compare_times_both_layouts_of_a_network():
    plain, nhwc = bench.compare("ststnet", epochs=1, rounds=1, threads=1)
    assert plain > 0 and nhwc > 0
