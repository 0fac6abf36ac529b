"""Motion: optical flow between aligned frames, optical strain, and cached flow features."""

from mekit.motion.cache import FeatureCache
from mekit.motion.features import FEATURE_VERSION, FlowConfig, onset_apex_features
from mekit.motion.flow import FlowMethod, compute_flow, optical_strain

__all__ = [
    "FEATURE_VERSION",
    "FeatureCache",
    "FlowConfig",
    "FlowMethod",
    "compute_flow",
    "onset_apex_features",
    "optical_strain",
]
