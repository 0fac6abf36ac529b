"""benchmarks/recipe_time.py: the timing corpus has the composite's shape; no data, no run."""

from __future__ import annotations

import csv

from benchmark_script import load_benchmark
from mekit.data.generic import load_generic
from test_engine_ensemble import write_flow_corpus


def test_an_absent_folder_is_skipped_with_a_message_and_exit_0(tmp_path, capsys):
    bench = load_benchmark("recipe_time")
    assert bench.main([str(tmp_path / "absent")]) == 0
    assert "skipped" in capsys.readouterr().out


def test_the_defaults_make_the_full_composites_shape_from_composite_devs():
    bench = load_benchmark("recipe_time")
    assert bench.DEFAULT_DIR.parts[-3:] == ("shared", "realdata", "composite-dev")
    assert 333 + bench.EXTRA_SAMPLES == 442 and 48 + bench.EXTRA_SUBJECTS == 68


def test_the_timing_corpus_adds_copies_under_new_subjects(tmp_path):
    bench = load_benchmark("recipe_time")
    source = write_flow_corpus(tmp_path / "source", subjects=3, per_subject=4)  # 12 samples
    out = bench.timing_corpus(source, tmp_path / "timing", subjects=2, samples=5)
    original = load_generic(source)
    timing = load_generic(out)
    assert len(timing.samples) == 12 + 5
    subjects = {s.subject for s in timing.samples}
    assert subjects == {s.subject for s in original.samples} | {"dup00", "dup01"}
    with open(out / "samples.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    copies = rows[12:]
    assert [r["subject"] for r in copies] == ["dup00", "dup01", "dup00", "dup01", "dup00"]
    assert [r["clip"] for r in copies] == [f"{r['clip']}_d{i}" for i, r in enumerate(rows[:5])]
    assert [r["flow"] for r in copies] == [r["flow"] for r in rows[:5]]  # the same files
    assert len({s.id for s in timing.samples}) == 17  # every copy is a sample of its own


def test_a_kept_folder_with_a_run_is_refused_since_the_run_would_resume(tmp_path, capsys):
    bench = load_benchmark("recipe_time")
    source = write_flow_corpus(tmp_path / "source", subjects=2, per_subject=3)
    (tmp_path / "keep" / "run").mkdir(parents=True)
    assert bench.main([str(source), "--keep", str(tmp_path / "keep")]) == 2
    assert "resumes" in capsys.readouterr().out
