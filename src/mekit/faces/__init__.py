"""Faces: detection, 68 landmarks (dlib) and eye-line alignment of whole clips."""

from mekit.faces.align import AlignedClip, FaceConfig, align_frames, alignment_matrix
from mekit.faces.landmarks import FaceLandmarker

__all__ = ["AlignedClip", "FaceConfig", "FaceLandmarker", "align_frames", "alignment_matrix"]
