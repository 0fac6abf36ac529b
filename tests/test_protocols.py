"""Protocols end to end on small synthetic corpora: folds, per-corpus scores, seeds, resume."""

import json

import pandas as pd
import pytest

from mekit.cli.main import main
from mekit.pipeline import CorpusSource, ExperimentConfig, run_experiment
from mekit.synth import SynthConfig, generate_corpus

SETTINGS = {"workers": 1, "features": {"method": "dis"}, "train": {"epochs": 2, "batch_size": 4}}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    paths = []
    for seed, name in ((0, "a"), (1, "b")):
        out = root / name
        config = SynthConfig(
            subjects=2,
            clips_per_subject=3,
            seed=seed,
            long_videos=False,
            emotions=("happiness", "surprise", "disgust"),
        )
        generate_corpus(out, config, progress=False)
        paths.append(out)
    return paths


def config(**values):
    return ExperimentConfig.from_dict({**SETTINGS, **values})


@pytest.mark.slow
def test_cross_dataset_holds_out_each_corpus(corpora, tmp_path):
    sources = [CorpusSource.parse(f"a={corpora[0]}"), CorpusSource.parse(f"b={corpora[1]}")]
    outcome = run_experiment(
        sources, tmp_path / "run", config(protocol="cross-dataset"), progress=False
    )
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert outcome.n_samples == 12
    # one fold per corpus, and each corpus is tested by the fold that held it out
    assert preds.groupby("dataset")["fold"].nunique().tolist() == [1, 1]
    assert preds.groupby("fold")["dataset"].nunique().tolist() == [1, 1]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["per_dataset"]) == {"a", "b"}
    assert "leave-one-corpus-out" in metrics["protocol"]
    assert "Per corpus" in (tmp_path / "run" / "summary.md").read_text()


@pytest.mark.slow
def test_same_seed_same_metrics_and_resume_gives_the_same_report(corpora, tmp_path):
    first = run_experiment(corpora[0], tmp_path / "one", config(), progress=False)
    again = run_experiment(corpora[0], tmp_path / "two", config(), progress=False)
    assert first.metrics == again.metrics
    one = pd.read_csv(tmp_path / "one" / "predictions.csv")
    pd.testing.assert_frame_equal(one, pd.read_csv(tmp_path / "two" / "predictions.csv"))
    # an interrupted run: one fold finished, the other not; the rerun trains only the rest
    checkpoints = sorted((tmp_path / "one" / "folds").glob("fold_*.npz"))
    assert len(checkpoints) == 2
    checkpoints[1].unlink()
    (tmp_path / "one" / "predictions.csv").unlink()
    resumed = run_experiment(corpora[0], tmp_path / "one", config(), progress=False)
    assert resumed.metrics == first.metrics
    pd.testing.assert_frame_equal(one, pd.read_csv(tmp_path / "one" / "predictions.csv"))


@pytest.mark.slow
def test_cli_seeds_evaluate_and_compare(corpora, tmp_path, capsys):
    common = ["--set", "train.epochs=2", "--set", "features.method=dis", "--workers", "1"]
    run = tmp_path / "kfold"
    args = ["train", "--corpus", str(corpora[0]), "--corpus", f"b={corpora[1]}"]
    code = main(
        [*args, "--protocol", "kfold", "--k", "2", "--seeds", "3,4", "--out", str(run)]
        + [*common, "--no-cache", "--quiet"]
    )
    assert code == 0
    seeds = json.loads((run / "seeds.json").read_text())
    assert seeds["seeds"] == [3, 4] and set(seeds["mean"]) == {"accuracy", "uf1", "uar"}
    assert (run / "seed-3" / "summary.md").is_file() and (run / "seed-4" / "summary.md").is_file()
    assert "± " in (run / "summary.md").read_text()
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "seed-3: accuracy" in out and "kfold" in out
    oracle = tmp_path / "oracle"
    code = main(
        ["train", "--corpus", str(corpora[0]), "--selection", "test-oracle", "--out", str(oracle)]
        + [*common, "--no-cache", "--quiet"]
    )
    assert code == 0
    capsys.readouterr()
    assert main(["compare", str(run), str(oracle)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | model | protocol")
    assert "test-oracle (ORACLE: not valid)" in table[3] and "fixed" in table[2]
