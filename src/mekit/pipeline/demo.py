"""The demo: a small synthetic corpus, a LOSO run on it, and the demo model file trained on
all of it, with no data to download."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from mekit.config import to_dict
from mekit.errors import MekitError
from mekit.pipeline.config import ExperimentConfig
from mekit.pipeline.experiment import RunOutcome, run_experiment
from mekit.synth import SynthConfig, generate_corpus

DEMO_MODEL_NAME = "demo-ststnet-synthetic"
DEMO_TRAINED_ON = "mekit synthetic corpus (demo)"


def run_demo(
    out: Path,
    subjects: int = 8,
    clips_per_subject: int = 12,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> RunOutcome:
    """Synthesise a small corpus (reused when already there for the same settings), then LOSO,
    then the demo model: STSTNet trained on all the samples, written to
    `out/model/demo-ststnet-synthetic` (.safetensors + .json, marked `"demo": true` in its
    sidecar's training record: it has seen synthetic faces only)."""
    out = Path(out)
    synth = SynthConfig(
        subjects=subjects, clips_per_subject=clips_per_subject, seed=seed, long_videos=False
    )
    corpus = out / "corpus"
    t0 = time.perf_counter()
    if not _same_corpus(corpus, synth):
        if corpus.exists():
            raise MekitError(f"{corpus} holds a different corpus; delete it or pick another --out")
        # written aside and renamed when complete, so an interrupted run leaves no half corpus
        partial = out / "corpus.partial"
        if partial.exists():
            shutil.rmtree(partial)
        generate_corpus(partial, synth, progress=progress)
        partial.rename(corpus)
    synth_s = time.perf_counter() - t0
    config = ExperimentConfig(dataset="synthetic", labels="megc2019", workers=workers)
    outcome = run_experiment(
        corpus,
        out / "run",
        config,
        cache_dir=out / "cache",
        progress=progress,
        export=out / "model" / DEMO_MODEL_NAME,
        provenance={"demo": True, "trained_on": DEMO_TRAINED_ON},
    )
    outcome.timings["synth_s"] = synth_s
    return outcome


def _same_corpus(corpus: Path, synth: SynthConfig) -> bool:
    meta = corpus / "synth.json"
    if not meta.is_file():
        return False
    saved = json.loads(meta.read_text()).get("config", {})
    return saved == to_dict(synth)
