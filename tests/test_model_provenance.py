"""A model file says how its figures were obtained: over which seeds, and whether by oracle."""

from __future__ import annotations

import json
import statistics

from mekit.app.recognise import load_recogniser
from mekit.cli.main import main
from test_engine_ensemble import write_flow_corpus


def train(corpus, out, *extra):
    return main(
        ["train", "--corpus", str(corpus), "--labels", "raw", "--out", str(out), "--quiet"]
        + ["--no-cache", "--engine", "plain", "--set", "train.epochs=3", *extra]
    )


def test_oracle_flag_and_seed_statistics_reach_the_model_file(tmp_path, capsys):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=3)
    assert train(corpus, tmp_path / "oracle", "--selection", "test-oracle", "--seeds", "1,2") == 0
    out = capsys.readouterr().out
    assert "mean ± std over 2 seeds" in out
    metrics = json.loads((tmp_path / "oracle" / "model.json").read_text())["metrics"]
    # before: the first seed's figures alone, and nothing said they came from the oracle
    assert metrics["oracle"] is True and "TEST-ORACLE" in metrics["warning"]
    assert metrics["seeds"] == [1, 2] and set(metrics["per_seed"]) == {"1", "2"}
    for key in ("accuracy", "uf1", "uar"):
        values = [metrics["per_seed"][s][key] for s in ("1", "2")]
        assert abs(metrics[key] - statistics.mean(values)) < 1e-12
        assert abs(metrics[f"{key}_std"] - statistics.stdev(values)) < 1e-12
    seeds = json.loads((tmp_path / "oracle" / "seeds.json").read_text())
    assert abs(seeds["mean"]["uf1"] - metrics["uf1"]) < 1e-12
    recogniser = load_recogniser(tmp_path / "oracle" / "model.json")
    assert recogniser.info.oracle and recogniser.info.to_json()["oracle"] is True
    assert any("test-oracle" in note.lower() for note in recogniser.notes)


def test_an_honest_model_carries_no_oracle_warning(tmp_path):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=3)
    assert train(corpus, tmp_path / "fixed") == 0
    metrics = json.loads((tmp_path / "fixed" / "model.json").read_text())["metrics"]
    assert metrics["oracle"] is False and "warning" not in metrics
    assert metrics["selection"] == "fixed" and metrics["uf1_std"] == 0.0
    recogniser = load_recogniser(tmp_path / "fixed" / "model.json")
    assert not recogniser.info.oracle
    assert not any("oracle" in note.lower() for note in recogniser.notes)
