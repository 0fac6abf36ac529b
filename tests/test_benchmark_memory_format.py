"""The pieces of `benchmarks/memory_format.py` (no benchmark is run)."""

from __future__ import annotations

from benchmark_script import load_benchmark

bench = load_benchmark("memory_format")


def test_it_times_every_network_that_trains_through_fit():
    names = bench.networks()
    assert {"mobilevitv3_xxs", "off_apexnet", "ststnet", "resnet18", "me_resnet"} <= set(names)
    assert {"cnn_lstm_fusion", "dtscnn", "keyframe_gru", "apex_neighbour_fusion"} <= set(names)
    assert not any(n.endswith("_average") or n in ("aunet", "flow_blend") for n in names)


def test_compare_times_both_layouts_of_a_network():
    plain, nhwc = bench.compare("ststnet", epochs=1, rounds=1, threads=1)
    assert plain > 0 and nhwc > 0
