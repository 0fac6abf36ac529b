"""Recognition of spotted events with a model file, its input computed as training computes it.

A `Recogniser` holds a model read by `mekit.train.checkpoint.load_model` and the settings its
sidecar records for its input (the face alignment and feature settings, `FaceConfig` and
`FeatureConfig`; mekit's defaults where an older sidecar lacks them). For one event it does
what `mekit.motion.extract.sample_features` does for a training clip: find the face and its 68
landmarks on the onset frame, align every frame the feature needs with that one transform
(eye line level, `FaceConfig.size` px), compute the feature the model's input spec asks for
(`mekit.train.inputs.feature_config_for`: for STSTNet, onset -> apex (u, v, strain) TV-L1 flow
with head motion removed, at 28 px), and run the model. It also gives the motion map (the
onset -> apex flow magnitude over the aligned face, px) and Grad-CAM
(`mekit.models.explain.grad_cam`) of the predicted class, and the event's action units: the
packaged AU model (`mekit.train.au_model`, trained on synthetic faces only) on the same
onset -> apex flow at 28 px, each AU with its probability and the region (and side) it moved.

`recognise_events` reads the video once more, streaming, keeping only the frames that events
still waiting need and recognising each event as soon as its last frame has gone by: memory
depends on how many frames events overlap on, not on the video's length.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mekit.app.result import UNCERTAIN, ModelInfo
from mekit.config import from_mapping
from mekit.errors import MekitError
from mekit.faces import FaceConfig, FaceLandmarker, align_frames
from mekit.models.explain import grad_cam
from mekit.motion import FeatureConfig, FeatureKind
from mekit.motion.features import compute_features, flow_features, frames_needed, onset_apex_flow
from mekit.motion.flow import magnitude
from mekit.spot.input.video import VideoReader
from mekit.spot.metrics import Interval
from mekit.train.au_model import AU_INPUT_SIZE, AUDetector, AUFinding, in_au_layout
from mekit.train.checkpoint import LoadedModel, load_model, model_paths
from mekit.train.export import model_is_oracle
from mekit.train.inputs import feature_config_for, to_model_layout
from mekit.train.loop import predict_proba
from mekit.train.report import ORACLE_WARNING

log = logging.getLogger(__name__)

MAP_SIDE = 256  # px of the motion and explanation PNGs


@dataclass(frozen=True)
class Recognition:
    """One event recognised: probabilities by label, and the pictures behind them.

    apex_face: (S, S) uint8 aligned grey apex frame (S = `FaceConfig.size`). motion: (S, S)
    float32 onset -> apex flow magnitude, px of the aligned face, head motion removed. cam:
    (S, S) float32 Grad-CAM of the predicted class in [0, 1] (None when it could not be made).
    abstain_below: the model's threshold; when no class reaches it, `emotion` is "uncertain".
    """

    probabilities: dict[str, float]
    apex_face: np.ndarray
    motion: np.ndarray
    cam: np.ndarray | None
    abstain_below: float = 0.0
    aus: tuple[AUFinding, ...] = ()  # the action units the AU model found, most probable first

    @property
    def predicted(self) -> str:
        """The most probable class, whatever its probability."""
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def emotion(self) -> str:
        """The most probable class, or "uncertain" below the model's `abstain_below`."""
        if self.probabilities[self.predicted] < self.abstain_below:
            return UNCERTAIN
        return self.predicted


@dataclass(frozen=True)
class Recogniser:
    """A model and the settings of its input; build one with `load_recogniser`."""

    loaded: LoadedModel
    info: ModelInfo
    face: FaceConfig
    features: FeatureConfig  # as the model's input spec resolves it (kind, size, frames)
    notes: tuple[str, ...] = ()  # e.g. settings the sidecar did not record
    abstain_below: float = 0.0  # the recipe's threshold (sidecar config), 0: never abstain
    au_detector: AUDetector | None = None  # the packaged AU model (None: no AUs reported)

    def frame_numbers(self, onset: int, apex: int, offset: int) -> tuple[int, ...]:
        """Frames the event needs, in order: the feature's (onset first), and the apex."""
        needed = frames_needed(onset, apex, offset, self.features)
        return tuple(sorted({onset, apex, *needed}))

    def recognise(
        self,
        frames: Mapping[int, np.ndarray],
        onset: int,
        apex: int,
        offset: int,
        fps: float,
        landmarker: FaceLandmarker,
    ) -> Recognition:
        """Recognise one event from its grey frames by number (`frame_numbers`); raises
        `MekitError` when the onset frame has no face or a frame is missing."""
        numbers = frames_needed(onset, apex, offset, self.features)
        missing = [n for n in {*numbers, apex} if n not in frames]
        if missing:
            raise MekitError(
                f"frame {min(missing)} could not be read (the video ends or is corrupt there)"
            )
        order = [*numbers, *([apex] if apex not in numbers else [])]
        clip = align_frames([frames[n] for n in order], landmarker, self.face)
        if clip is None:
            raise MekitError(
                f"no face found in onset frame {onset} (the face should be frontal and at "
                "least ~80 px wide)"
            )
        aligned = dict(zip(order, clip.frames, strict=True))
        kind = FeatureKind(self.features.kind)
        flow = onset_apex_flow(aligned[onset], aligned[apex], clip.landmarks, self.features)
        if kind is FeatureKind.ONSET_APEX and self.features.magnify_alpha == 0:
            features = flow_features(flow, self.features)  # what compute_features computes
        else:
            stack = np.stack([aligned[n] for n in numbers])
            features = compute_features(
                stack, numbers, onset, apex, offset, fps, clip.landmarks, self.features
            )
        spec = self.loaded.spec
        x = to_model_layout(features[None], spec, kind)
        probs = predict_proba(self.loaded.model, x)[0]
        probabilities = {
            label: float(p) for label, p in zip(self.loaded.labels, probs, strict=True)
        }
        motion = magnitude(flow)
        side = self.face.size
        if motion.shape[-1] != side:  # the flow ran at the model's input size (flow_size)
            motion = cv2.resize(motion, (side, side), interpolation=cv2.INTER_LINEAR)
            motion *= np.float32(side / flow.shape[-1])  # px of the aligned face, as the map says
        aus: tuple[AUFinding, ...] = ()
        if self.au_detector is not None:  # the same onset -> apex flow, at the AU model's 28 px
            au_input = flow_features(flow, FeatureConfig(size=AU_INPUT_SIZE))
            au_input = in_au_layout(au_input, clip.landmarks, self.face.size)
            aus = tuple(self.au_detector.findings(au_input, motion))
        return Recognition(
            probabilities=probabilities,
            apex_face=aligned[apex],
            motion=motion,
            cam=self._cam(x, self.face.size),
            abstain_below=self.abstain_below,
            aus=aus,
        )

    def _cam(self, x: np.ndarray, size: int) -> np.ndarray | None:
        try:
            cam = grad_cam(self.loaded.model, torch.from_numpy(x))[0].numpy()
        except MekitError as e:  # a model without a conv layer: no explanation, say why
            log.warning("no Grad-CAM for %s: %s", self.info.name, e)
            return None
        return cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def load_recogniser(path: Path) -> Recogniser:
    """The model file at `path` (stem, .json or .safetensors) with its input settings."""
    loaded = load_model(path)
    meta = loaded.meta
    notes = []
    face_values = _section(meta, "face")
    feature_values = _section(meta, "features")
    if feature_values is None:
        notes.append(
            f"model {model_paths(path)[1].name} does not record its feature settings; "
            "mekit's defaults are used (TV-L1 flow, head motion removed)"
        )
    face = from_mapping(FaceConfig, face_values or {})
    base = from_mapping(FeatureConfig, feature_values or {})
    features = feature_config_for(loaded.spec, base)
    training = meta.get("training") or {}
    corpus = training.get("corpus")
    trained_on = str(
        training.get("trained_on")
        or ("+".join(corpus) if isinstance(corpus, list) else corpus)
        or "not recorded"
    )
    oracle = model_is_oracle(meta)
    if oracle:
        notes.append(
            f"model {model_paths(path)[1].name}: its recorded figures come from {ORACLE_WARNING}: "
            "each fold kept the epoch that scored best on its own test subject, so they "
            "overstate how well it recognises new people"
        )
    info = ModelInfo(
        path=model_paths(path)[1],
        name=loaded.name,
        labels=loaded.labels,
        demo=bool(training.get("demo", False)),
        trained_on=trained_on,
        metrics=meta.get("metrics"),
        created=str(meta.get("created", "")),
        oracle=oracle,
    )
    detector = None
    try:
        detector = AUDetector.shipped()
    except MekitError as e:
        notes.append(f"no action units: {e}")
    return Recogniser(
        loaded,
        info,
        face,
        features,
        tuple(notes),
        abstain_below=abstain_below(meta),
        au_detector=detector,
    )


def abstain_below(meta: Mapping[str, Any]) -> float:
    """The abstention threshold a model file's training config records (0 when none)."""
    config = meta.get("config")
    value = config.get("abstain_below", 0.0) if isinstance(config, dict) else 0.0
    return float(value) if isinstance(value, int | float) and 0 <= value < 1 else 0.0


def _section(meta: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """Settings `name` ("face", "features") from the sidecar's input, else its config."""
    for where in ("input", "config"):
        part = meta.get(where)
        if isinstance(part, dict) and isinstance(part.get(name), dict):
            return dict(part[name])
    return None


def event_frames(event: Interval) -> tuple[int, int, int]:
    """(onset, apex, offset) to compute features from: an apex on the onset frame (or none)
    moves one frame on, so onset -> apex is never an empty motion."""
    apex = event.apex if event.apex is not None else (event.onset + event.offset) // 2
    if apex <= event.onset < event.offset:
        apex = event.onset + 1
    return event.onset, apex, event.offset


def recognise_events(
    video: Path,
    events: Sequence[Interval],
    recogniser: Recogniser,
    fps: float,
    progress: Callable[[float], None] | None = None,
) -> list[Recognition | str]:
    """Each event's `Recognition`, or the reason it failed, in `events` order (one streaming
    pass over `video`, see the module doc)."""
    if not events:
        return []
    timing = [event_frames(e) for e in events]
    plans = [recogniser.frame_numbers(*t) for t in timing]
    refs = Counter(n for plan in plans for n in plan)
    order = sorted(range(len(events)), key=lambda i: plans[i][-1])
    results: list[Recognition | str | None] = [None] * len(events)
    held: dict[int, np.ndarray] = {}
    landmarker = FaceLandmarker(recogniser.face.upsample)
    done = 0

    def finish(i: int) -> None:
        nonlocal done
        try:
            results[i] = recogniser.recognise(held, *timing[i], fps, landmarker)
        except (MekitError, cv2.error, ValueError) as e:
            results[i] = str(e)
        for n in plans[i]:
            refs[n] -= 1
            if refs[n] == 0:
                held.pop(n, None)
        done += 1
        if progress is not None:
            progress(done / len(events))

    position = 0
    reader = VideoReader(video)
    for frame in reader.frames(min(refs), max(refs) + 1):
        if refs.get(frame.index, 0) > 0:
            held[frame.index] = frame.image
        while position < len(order) and plans[order[position]][-1] <= frame.index:
            finish(order[position])
            position += 1
    for i in order[position:]:  # the video ended before these events' last frames
        finish(i)
    return [r if r is not None else "not recognised" for r in results]


def motion_image(recognition: Recognition) -> np.ndarray:
    """(MAP_SIDE, MAP_SIDE, 3) uint8 BGR: the onset -> apex flow magnitude (inferno colour map,
    scaled to its own maximum, at least 0.5 px) over the aligned apex face."""
    top = max(0.5, float(np.nanmax(recognition.motion)))
    level = np.clip(np.nan_to_num(recognition.motion) / top, 0, 1)
    colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    face = cv2.cvtColor(recognition.apex_face, cv2.COLOR_GRAY2BGR)
    alpha = (0.25 + 0.65 * level)[..., None]
    picture = (face * (1 - alpha) + colour * alpha).astype(np.uint8)
    return _caption(_upscale(picture), f"motion onset->apex, max {top:.2f} px")


def explanation_image(recognition: Recognition, label: str) -> np.ndarray | None:
    """(MAP_SIDE, MAP_SIDE, 3) uint8 BGR: Grad-CAM of `label` (jet) over the apex face."""
    if recognition.cam is None:
        return None
    heat = cv2.applyColorMap(
        (np.clip(recognition.cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET
    )
    face = cv2.cvtColor(recognition.apex_face, cv2.COLOR_GRAY2BGR)
    picture = cv2.addWeighted(face, 0.55, heat, 0.45, 0)
    return _caption(_upscale(picture), f"Grad-CAM: {label}")


def _upscale(picture: np.ndarray) -> np.ndarray:
    return cv2.resize(picture, (MAP_SIDE, MAP_SIDE), interpolation=cv2.INTER_CUBIC)


def _caption(picture: np.ndarray, text: str) -> np.ndarray:
    cv2.rectangle(picture, (0, 0), (MAP_SIDE - 1, 18), (0, 0, 0), -1)
    cv2.putText(picture, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return picture
