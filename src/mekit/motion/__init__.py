"""Motion: optical flow between aligned frames, strain, sequences, LBP-TOP, cached features."""

from mekit.motion.cache import FeatureCache
from mekit.motion.features import FEATURE_VERSION, FeatureConfig, FeatureKind, compute_features
from mekit.motion.flow import FlowMethod, compute_flow, optical_strain

__all__ = [
    "FEATURE_VERSION",
    "FeatureCache",
    "FeatureConfig",
    "FeatureKind",
    "FlowMethod",
    "compute_features",
    "compute_flow",
    "optical_strain",
]
