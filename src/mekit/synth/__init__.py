"""Synthetic micro-expression corpus: real base faces, FACS AU motions, CASME II layout.

from mekit.synth import SynthConfig, generate_corpus
summary = generate_corpus(Path("synth_out"), SynthConfig(long_videos=False))
"""

from mekit.synth.aus import AU_LIBRARY, AU_NAMES, EMOTION_AUS, expression_field
from mekit.synth.config import SynthConfig
from mekit.synth.corpus import (
    GROUND_TRUTH_COLUMNS,
    SHEET_NAME,
    SynthSummary,
    generate_corpus,
    true_apex_field,
)
from mekit.synth.outputs import SHEET_HEADER

__all__ = [
    "AU_LIBRARY",
    "AU_NAMES",
    "EMOTION_AUS",
    "GROUND_TRUTH_COLUMNS",
    "SHEET_HEADER",
    "SHEET_NAME",
    "SynthConfig",
    "SynthSummary",
    "expression_field",
    "generate_corpus",
    "true_apex_field",
]
