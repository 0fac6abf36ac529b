"""Small synthetic corpora shared by the synth tests (built once per session, ~1 s each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mekit.synth import SynthConfig, SynthSummary, generate_corpus

SMALL = SynthConfig(
    subjects=2,
    clips_per_subject=4,
    duration_ms=(40.0, 120.0),
    lead_ms=(10.0, 40.0),
    blink_prob=1.0,
    long_videos=False,
)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate_corpus(tmp_path_factory.mktemp("synth") / "out", SMALL, progress=False)


@pytest.fixture(scope="session")
def clean_corpus(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    """No nuisances, one subject, fixed 3 px apex, one happiness and one surprise clip."""
    config = SynthConfig(
        subjects=1,
        clips_per_subject=2,
        emotions=("happiness", "surprise"),
        amplitude_px=(3.0, 3.0),
        duration_ms=(100.0, 150.0),
        nuisances=False,
        long_videos=False,
    )
    return generate_corpus(tmp_path_factory.mktemp("synth") / "clean", config, progress=False)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
