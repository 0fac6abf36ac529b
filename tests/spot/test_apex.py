"""The apex of annotated synthetic clips, spotted: near the true apex, and used by training."""

import json

import pytest

from mekit.cli.main import main
from mekit.synth import SynthConfig, generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("apex") / "corpus"
    config = SynthConfig(subjects=2, clips_per_subject=3, long_videos=False, seed=3)
    generate_corpus(out, config, progress=False)
    return out


def test_spot_apex_cli_is_near_the_annotated_apex(corpus, tmp_path, capsys):
    assert main(["spot", str(corpus), "--apex", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "apex spotted in 6 clips, 0 failed" in out
    rows = (tmp_path / "apex.csv").read_text().splitlines()[1:]
    errors = [int(r.split(",")[-1]) for r in rows]
    assert len(errors) == 6 and max(errors) <= 6 and sum(errors) / 6 <= 3


@pytest.mark.slow
def test_training_can_use_spotted_apexes(corpus, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--corpus", str(corpus), "--out", str(run), "--set", "apex=spot-missing"]
    args += ["--set", "train.epochs=1", "--workers", "1", "--no-cache", "--quiet"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # every synthetic apex is annotated: nothing to spot, and the config records the mode
    assert metrics["extra"]["apex_spotted"] == 0
    assert json.loads((run / "config.json").read_text())["apex"] == "spot-missing"
