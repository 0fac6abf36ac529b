"""Random streams and subject naming shared by the clips and the long videos.

Streams: identity (seed, 0, subject), schedule (seed, 1, subject), clip (seed, 2, subject,
clip), long video (seed, 3, video); subject and clip are 0-based.
"""

from __future__ import annotations

import numpy as np

from mekit.synth.config import SynthConfig
from mekit.synth.identity import Identity, make_identity

IDENTITY, SCHEDULE, CLIP, LONG_VIDEO = 0, 1, 2, 3


def stream(seed: int, *keys: int) -> np.random.Generator:
    """The numpy Generator of one random stream, e.g. stream(seed, CLIP, subject, clip)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def subject_id(subject: int) -> str:
    """0-based subject index -> the sheet's 2-digit subject ('01')."""
    return f"{subject + 1:02d}"


def subject_identity(subject: int, config: SynthConfig) -> Identity:
    return make_identity(
        subject,
        stream(config.seed, IDENTITY, subject),
        config.frame_size,
        config.face_width,
        config.identity_strength,
    )
