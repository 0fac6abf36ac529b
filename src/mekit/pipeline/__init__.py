"""The pipeline: corpora -> labels -> faces -> features -> model -> cross-validation -> report.

One module per job, each wiring the stage packages, joined by sample id: `experiment` (a run
and its model file), `blend` (several recipes' runs averaged), `labelled` (the corpora a run
reads), `cross_validation` (how its folds are trained), `evaluate` (a model file scored on
other corpora), `prepare` (features computed ahead), `demo`, `pretrain` (on macro-expression
images) and `face_crop`.
"""

from mekit.pipeline.blend import run_blend
from mekit.pipeline.config import ExperimentConfig
from mekit.pipeline.demo import DEMO_MODEL_NAME, DEMO_TRAINED_ON, run_demo
from mekit.pipeline.evaluate import evaluate_model
from mekit.pipeline.experiment import RunOutcome, model_metrics, run_experiment
from mekit.pipeline.labelled import CorpusSource, LabelledCorpus, check_composite, load_labelled
from mekit.pipeline.prepare import PrepareOutcome, prepare_corpus
from mekit.pipeline.pretrain import load_image_source, run_pretrain

__all__ = [
    "DEMO_MODEL_NAME",
    "DEMO_TRAINED_ON",
    "CorpusSource",
    "ExperimentConfig",
    "LabelledCorpus",
    "PrepareOutcome",
    "RunOutcome",
    "check_composite",
    "evaluate_model",
    "load_image_source",
    "load_labelled",
    "model_metrics",
    "prepare_corpus",
    "run_blend",
    "run_demo",
    "run_experiment",
    "run_pretrain",
]
