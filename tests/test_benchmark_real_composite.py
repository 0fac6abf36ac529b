"""benchmarks/real_composite.py: a clone without the real data skips cleanly (exit 0)."""

from __future__ import annotations

import pytest

from benchmark_script import BENCHMARKS, load_benchmark


def test_an_absent_folder_is_skipped_with_a_message_and_exit_0(tmp_path, capsys):
    bench = load_benchmark("real_composite")
    assert bench.main([str(tmp_path / "absent")]) == 0
    assert "skipped" in capsys.readouterr().out


def test_its_default_folder_is_beside_the_project_and_its_rows_are_honest():
    bench = load_benchmark("real_composite")
    assert bench.DEFAULT_DIR.parts[-3:] == ("shared", "realdata", "composite-dev")
    assert bench.DEFAULT_DIR.parents[2] == BENCHMARKS.parents[1]  # ../shared from the project root
    rows = bench.entries(["ststnet-default"], ["off_apexnet"])
    assert [name for name, _ in rows] == ["recipe ststnet-default", "model off_apexnet"]
    assert bench.protocol(quick=True, k=4) == {"protocol": "kfold", "k": 4}
    assert bench.protocol(quick=False, k=4)["protocol"] == "composite"


@pytest.mark.parametrize("name", ["composite-best", "ststnet-default"])
def test_the_recipes_it_runs_select_nothing_on_test_subjects(name):
    bench = load_benchmark("real_composite")
    ((_, settings),) = bench.entries([name], [])
    assert settings.get("train", {}).get("selection", "fixed") == "fixed"


def test_the_multi_seed_summary_gives_means_ranges_and_paired_differences():
    bench = load_benchmark("real_composite")
    uf1 = {
        "recipe base": {0: 0.70, 1: 0.60},
        "recipe best": {0: 0.78, 1: 0.72},
    }
    header, rule, base, best = bench.summary(uf1, [0, 1])
    assert "mean diff vs recipe base" in header and rule.count("---") == 6
    assert base == "| recipe base | 0.650 | 0.600-0.700 | +0.000 | +0.000 | +0.000 |"
    # 0.78 - 0.70 = +0.08 at seed 0, 0.72 - 0.60 = +0.12 at seed 1: +0.10 on average
    assert best == "| recipe best | 0.750 | 0.720-0.780 | +0.100 | +0.080 | +0.120 |"


def test_seeds_are_distinct_integers():
    bench = load_benchmark("real_composite")
    assert bench.parse_seeds("0,1,2") == [0, 1, 2]
    assert bench.parse_seeds("3") == [3]
    for bad in ("0,x", "1,1", ","):
        with pytest.raises(SystemExit, match="--seeds"):
            bench.parse_seeds(bad)
