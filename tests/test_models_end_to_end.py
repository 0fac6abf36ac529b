"""Every registered model trains through the same pipeline from its name alone: the data side
reads the model's spec and prepares its input (issue: one training command for every model)."""

import pandas as pd
import pytest

from mekit.models import list_models
from mekit.pipeline import ExperimentConfig, run_experiment
from mekit.synth import SynthConfig, generate_corpus
from mekit.train import TrainConfig

NAMES = [spec.name for spec in list_models()] + ["lbptop_svm"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "corpus"
    generate_corpus(
        out,
        SynthConfig(
            subjects=2,
            clips_per_subject=3,
            long_videos=False,
            emotions=("happiness", "surprise", "disgust"),
        ),
        progress=False,
    )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_model_trains_from_its_name(corpus, tmp_path, name):
    config = ExperimentConfig.from_dict(
        {
            "dataset": "synthetic",
            "model": name,
            "workers": 1,
            "features": {"method": "dis"},
            "train": {"epochs": 1, "batch_size": 4},
        }
    )
    assert isinstance(config.train, TrainConfig)
    outcome = run_experiment(corpus, tmp_path / "run", config, progress=False)
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert outcome.n_samples == 6 and len(preds) == 6 and not outcome.skipped
    assert set(preds["subject"]) == {"sub01", "sub02"}
    probs = preds.filter(like="prob_")
    assert probs.shape[1] == 3 and ((probs.sum(axis=1) - 1).abs() < 1e-4).all()
