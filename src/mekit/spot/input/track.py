"""A streaming face track for long videos: detect once, follow with landmarks, crop per shot.

Per frame, `FaceTrack.update` does only what that frame needs:

- no track yet (start, or the face was lost): dlib's HOG detector on the whole frame, tried
  every `redetect_s` seconds of video (the first frame at once) with the same upsampling
  fallback and the same 68-point predictor file as `mekit.faces.FaceLandmarker` (dlib is called
  directly because tracking needs what that class does not expose: the detector's box, and the
  predictor alone on a given box);
- a track: the shape predictor alone on the box where the face is (about 1-2 ms, no
  detection) every `landmark_every` frames, smoothed with an exponential moving average of time
  constant `smoothing_s`. The box keeps the size the detector gave and moves with the
  landmarks' stable points (eye corners, nose bridge): the predictor's output follows its
  box's size, so a box re-derived from the landmarks would feed back on itself and drift;
- checks: every `verify_s` seconds, or at once when the face crop stops looking like the shot's
  first crop (normalised correlation below `min_similarity`), the detector is run on a region
  around the track; a face there but off the track (it jumped further than the predictor
  follows) -> the track is re-seated on it; no face there -> full-frame detection; none -> the
  track is lost. A face whose landmarks other than the jaw line leave the frame is flagged
  (`face_ok` False), and lost once their centre leaves;
- shots: the crop transform (`mekit.faces.align.alignment_matrix`: eye line level, landmark box
  plus forehead, `face_size` px square, fitted inside the frame) is fixed for a stable shot and
  re-estimated only when the smoothed face moved by more than `shot_move` x its width from where
  the shot began (or scaled by more than that fraction, or rolled by more than `shot_roll_deg`) and
  came to rest, or after a re-detection. Within a shot, crops of still frames are pixel-aligned, so
  small facial motions are not swamped by crop jitter.

The crop is taken from a region of interest reduced with Gaussian pyramid steps (cv2.pyrDown)
to between 1 and 2 times the crop's resolution before the affine warp, so a large face shrunk
to 64 px is averaged, not aliased. Nothing is kept from frame to frame but the track state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from mekit.config import Config
from mekit.errors import MekitError
from mekit.faces.align import FaceConfig, alignment_matrix
from mekit.faces.landmarks import dlib_models

log = logging.getLogger(__name__)

LEFT_EYE = (36, 37, 38, 39, 40, 41)  # image-left eye: outer corner, upper lid x2, inner, lower x2
RIGHT_EYE = (42, 43, 44, 45, 46, 47)
STABLE = (36, 39, 42, 45, 27, 28, 29, 30)  # eye corners, nose bridge
INNER_FACE = list(range(17, 68))  # brows, nose, eyes, mouth: all but the jaw line
FACE_PER_EYE_SPAN = 1.8  # jaw width / outer-eye-corner span of a frontal face, about


class NoFaceError(MekitError):
    """No face was found anywhere in a video."""


@dataclass(frozen=True)
class TrackConfig(Config, section="track"):
    """How the track is kept. Times are in seconds of video, so they hold at any frame rate.

    face_size: side of the aligned grey crop, px (small is fast: 64 px gives 200+ frames/s).
    landmark_every: run the shape predictor every this many frames; None: about every 20 ms
    (each frame up to 50 fps, every 4th frame at 200 fps). Between runs the landmarks are held.
    smoothing_s: time constant of the landmarks' exponential moving average.
    shot_move: a new shot (crop transform) when the face moved by more than this fraction of
    its width, or changed size by more than this fraction. shot_roll_deg: ... or rolled more.
    settle: ... and has come to rest: moved less than this fraction of its width between two
    landmark updates; shot_settle_s: or has been moving this long.
    verify_s: check the track with the detector near the face this often.
    redetect_s: with no track, try to detect the face this often.
    min_similarity: normalised correlation of the crop with the shot's first crop below which
    the track is checked at once.
    margin, forehead: the crop box, as in `mekit.faces.FaceConfig`.
    upsample: detector upsampling tried when a plain pass finds no face (small faces).
    """

    face_size: int = 64
    landmark_every: int | None = None
    smoothing_s: float = 0.02
    shot_move: float = 0.1
    shot_roll_deg: float = 6.0
    settle: float = 0.02
    shot_settle_s: float = 0.25
    verify_s: float = 1.0
    redetect_s: float = 0.5
    min_similarity: float = 0.4
    margin: float = 0.05
    forehead: float = 0.15
    upsample: int = 1

    def every(self, fps: float) -> int:
        if self.landmark_every is not None:
            return max(1, int(self.landmark_every))
        return max(1, int(round(fps * 0.02))) if fps > 0 else 1


@dataclass(frozen=True)
class TrackedFrame:
    """The track at one frame.

    crop: (face_size, face_size) uint8 aligned grey face, or None when `face_ok` is False.
    landmarks: (68, 2) float32 smoothed landmarks in crop px (None without a track).
    face_ok: a tracked face fully inside the frame. shot: id of the crop transform (0, 1, ...;
    -1 without a track). matrix: (2, 3) affine from frame px to crop px (None without a track).
    image: the whole grey frame (kept so a consumer can re-crop it with a later shot's
    transform). ear: eye aspect ratio of the smoothed landmarks (NaN when not face_ok).
    landmarks_updated: the predictor ran on this frame (else the landmarks were held).
    """

    index: int
    time_s: float
    image: np.ndarray
    crop: np.ndarray | None
    landmarks: np.ndarray | None
    face_ok: bool
    shot: int
    matrix: np.ndarray | None
    ear: float
    landmarks_updated: bool


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean over both eyes of (|p2-p6| + |p3-p5|) / (2 |p1-p4|) (Soukupova & Cech, 2016):
    about 0.25-0.35 open, towards 0 closed. Scale-free, so crop or frame px alike."""
    values = []
    for eye in (LEFT_EYE, RIGHT_EYE):
        p = landmarks[list(eye)].astype(np.float64)
        width = np.linalg.norm(p[0] - p[3])
        if width <= 0:
            return math.nan
        values.append((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * width))
    return float(np.mean(values))


def face_width(landmarks: np.ndarray) -> float:
    """Jaw width |p0 - p16|, px."""
    return float(np.linalg.norm(landmarks[16] - landmarks[0]))


class Cropper:
    """Crops one shot's aligned face from whole frames: a fixed region, pyramid-reduced, then
    one affine warp."""

    def __init__(self, matrix: np.ndarray, size: int, frame_shape: tuple[int, int]) -> None:
        self.matrix = matrix.astype(np.float64)
        self.size = size
        scale = math.sqrt(abs(float(np.linalg.det(self.matrix[:, :2]))))
        self.levels = max(0, int(math.floor(math.log2(1.0 / scale)))) if scale < 0.5 else 0
        inverse = cv2.invertAffineTransform(self.matrix)
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
        src = corners @ inverse[:, :2].T + inverse[:, 2]
        pad = 2 ** (self.levels + 2)
        h, w = frame_shape
        x0 = int(np.clip(np.floor(src[:, 0].min()) - pad, 0, w - 1))
        y0 = int(np.clip(np.floor(src[:, 1].min()) - pad, 0, h - 1))
        x1 = int(np.clip(np.ceil(src[:, 0].max()) + pad, x0 + 1, w))
        y1 = int(np.clip(np.ceil(src[:, 1].max()) + pad, y0 + 1, h))
        self.roi = (slice(y0, y1), slice(x0, x1))
        step = float(2**self.levels)
        local = self.matrix.copy()
        local[:, 2] = self.matrix[:, :2] @ np.array([x0, y0], np.float64) + self.matrix[:, 2]
        local[:, :2] = self.matrix[:, :2] * step  # pyrDown's pixel j is the input's 2 j
        self.local = local

    def __call__(self, image: np.ndarray) -> np.ndarray:
        region = image[self.roi]
        for _ in range(self.levels):
            region = cv2.pyrDown(region)
        return cv2.warpAffine(
            region,
            self.local,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def points(self, landmarks: np.ndarray) -> np.ndarray:
        """Frame px -> crop px."""
        return (landmarks @ self.matrix[:, :2].T + self.matrix[:, 2]).astype(np.float32)


class FaceTrack:
    """Follows the face of one video frame by frame (see the module doc).

    Feed frames in order with `update(index, image, time_s)` or wrap an iterable with
    `run(frames)`. Counters: n_frames, n_face (frames with face_ok), n_shots, n_detections
    (full-frame detector runs), n_lost (times the track was lost).
    """

    def __init__(self, fps: float, config: TrackConfig | None = None, name: str = "video") -> None:
        self.config = config or TrackConfig()
        self.fps = fps if fps and fps > 0 else 30.0
        self.name = name
        self.every = self.config.every(self.fps)
        dt = self.every / self.fps
        self.alpha = 1.0 - math.exp(-dt / self.config.smoothing_s) if self.config.smoothing_s else 1
        self.face_config = FaceConfig(
            size=self.config.face_size, margin=self.config.margin, forehead=self.config.forehead
        )
        self._detector = None
        self._predictor = None
        self._upsample_used = 0
        self._reset()
        self.n_frames = self.n_face = self.n_shots = self.n_detections = self.n_lost = 0
        self.shot = -1

    # -- state -----------------------------------------------------------------------------
    def _reset(self) -> None:
        self.landmarks: np.ndarray | None = None  # smoothed, frame px
        self._box_model: np.ndarray | None = None  # detector box, px from the anchor
        self._cropper: Cropper | None = None
        self._shot_ref: tuple[np.ndarray, float, float] | None = None  # anchor, eye span, roll
        self._ref_crop: np.ndarray | None = None
        self._last_landmarks = -(10**9)
        self._next_verify = 0
        self._next_detect = 0
        self._check_now = False
        self._ear: float | None = None
        self._last_anchor: np.ndarray | None = None
        self._moving_since: int | None = None

    @property
    def cropper(self) -> Cropper | None:
        """The current shot's cropper (None without a track)."""
        return self._cropper

    @property
    def tracking(self) -> bool:
        return self.landmarks is not None

    def _load(self) -> None:
        self._detector, self._predictor = dlib_models()

    # -- detector and predictor --------------------------------------------------------------
    def _detect(self, image: np.ndarray, levels: tuple[int, ...] | None = None):
        """Largest face's dlib rectangle in `image`, or None. `levels`: upsampling levels to
        try in turn (default: none, then `config.upsample`; the level that worked is kept for
        the checks near the track)."""
        assert self._detector is not None
        search = levels if levels is not None else (0, self.config.upsample)
        for level in dict.fromkeys(search):
            rects = self._detector(image, level)
            if len(rects):
                if levels is None:
                    self._upsample_used = level
                return max(rects, key=lambda r: r.width() * r.height())
        return None

    def _predict(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        import dlib

        assert self._predictor is not None
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _box(self) -> tuple[float, float, float, float]:
        """The predictor's box: the last detector box, moved with the landmarks' stable points
        (its size changes only at a detection, so box and landmarks cannot feed each other)."""
        assert self.landmarks is not None and self._box_model is not None
        x, y = _anchor(self.landmarks)
        x0, y0, x1, y1 = self._box_model
        return (x + x0, y + y0, x + x1, y + y1)

    def _anchor_box(self, box: tuple[float, float, float, float], landmarks: np.ndarray) -> None:
        x, y = _anchor(landmarks)
        self._box_model = np.array([box[0] - x, box[1] - y, box[2] - x, box[3] - y], np.float64)

    def _start(self, image: np.ndarray, rect, index: int) -> None:
        """A track from a detection: landmarks, box model, a new shot."""
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        landmarks = self._predict(image, box)
        self._anchor_box(box, landmarks)
        self.landmarks = landmarks
        self._last_landmarks = index
        self._next_verify = index + max(1, int(round(self.config.verify_s * self.fps)))
        self._new_shot(image)

    def _new_shot(self, image: np.ndarray) -> None:
        assert self.landmarks is not None
        matrix = alignment_matrix(self.landmarks, self.face_config, image.shape)
        self._cropper = Cropper(matrix, self.config.face_size, image.shape[:2])
        self._shot_ref = (_anchor(self.landmarks), _span(self.landmarks), _roll(self.landmarks))
        self._ref_crop = None
        self._moving_since = None
        self.shot = self.n_shots
        self.n_shots += 1

    def _moved(self) -> bool:
        assert self.landmarks is not None and self._shot_ref is not None
        centre, span, roll = self._shot_ref
        shift = float(np.linalg.norm(_anchor(self.landmarks) - centre))
        limit = self.config.shot_move
        return (
            shift > limit * FACE_PER_EYE_SPAN * span
            or abs(_span(self.landmarks) / span - 1.0) > limit
            or abs(_roll(self.landmarks) - roll) > self.config.shot_roll_deg
        )

    def _verify(self, image: np.ndarray) -> str:
        """Is the face where the track is? "ok"; "moved" when the detector finds it near but
        off the track (the track is re-seated on it); "missing" when not found near."""
        x0, y0, x1, y1 = self._box()
        w, h = x1 - x0, y1 - y0
        H, W = image.shape[:2]
        rx0, ry0 = int(max(0, x0 - 0.5 * w)), int(max(0, y0 - 0.5 * h))
        rx1, ry1 = int(min(W, x1 + 0.5 * w)), int(min(H, y1 + 0.5 * h))
        if rx1 - rx0 < 40 or ry1 - ry0 < 40:
            return "missing"
        region = np.ascontiguousarray(image[ry0:ry1, rx0:rx1])
        rect = self._detect(region, (self._upsample_used,))
        if rect is None:
            return "missing"
        # A detection in a cut-out region comes from another rung of the detector's scale
        # pyramid (another box size), and the predictor's output follows its box's size: use
        # the found box's centre only, keep the track's box size.
        fx = (rect.left() + rect.right()) / 2 + rx0
        fy = (rect.top() + rect.bottom()) / 2 + ry0
        off = math.hypot(fx - (x0 + x1) / 2, fy - (y0 + y1) / 2)
        if off <= 0.1 * w:
            return "ok"
        box = (fx - w / 2, fy - h / 2, fx + w / 2, fy + h / 2)
        self.landmarks = self._predict(image, box)
        self._anchor_box(box, self.landmarks)
        return "moved"

    # -- per frame ---------------------------------------------------------------------------
    def update(self, index: int, image: np.ndarray, time_s: float = math.nan) -> TrackedFrame:
        """Advance the track by one grey uint8 frame (frames in order)."""
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if image.dtype != np.uint8:
            raise MekitError(f"{self.name}: frames must be uint8, got {image.dtype}")
        if self._detector is None:
            self._load()
        self.n_frames += 1
        position = self.n_frames - 1
        updated = False
        if not self.tracking:
            if position >= self._next_detect:
                self.n_detections += 1
                rect = self._detect(image)
                if rect is not None:
                    self._start(image, rect, position)
                    updated = True
                    log.info("%s: face found at frame %d", self.name, index)
                else:
                    self._next_detect = position + max(
                        1, int(round(self.config.redetect_s * self.fps))
                    )
        else:
            if position - self._last_landmarks >= self.every:
                raw = self._predict(image, self._box())
                assert self.landmarks is not None
                self.landmarks = self.landmarks + np.float32(self.alpha) * (raw - self.landmarks)
                self._last_landmarks = position
                updated = True
            if self._check_now or position >= self._next_verify:
                self._check_now = False
                self._next_verify = position + max(1, int(round(self.config.verify_s * self.fps)))
                verdict = self._verify(image)
                if verdict == "moved":
                    updated = True
                elif verdict == "missing":
                    self.n_detections += 1
                    rect = self._detect(image)
                    if rect is None:
                        self._lose(index, "the detector no longer finds it")
                    else:
                        self._start(image, rect, position)
                        updated = True
            if self.tracking and self._centre_outside(image):
                self._lose(index, "it left the frame")
            if self.tracking and updated:
                self._shot_check(image, position)
        return self._emit(index, time_s, image, updated)

    def _shot_check(self, image: np.ndarray, position: int) -> None:
        """A new shot once the face moved past the limits and has come to rest (its anchor
        moved by less than `settle` x its width since the last landmark update), or after
        `shot_settle_s` in motion: one transform per resting place, not one per step."""
        assert self.landmarks is not None
        anchor = _anchor(self.landmarks)
        step = (
            math.inf
            if self._last_anchor is None
            else float(np.linalg.norm(anchor - self._last_anchor))
        )
        self._last_anchor = anchor
        if not self._moved():
            self._moving_since = None
            return
        if self._moving_since is None:
            self._moving_since = position
        waited = (position - self._moving_since) / self.fps
        if step < self.config.settle * FACE_PER_EYE_SPAN * _span(self.landmarks) or (
            waited >= self.config.shot_settle_s
        ):
            self._new_shot(image)

    def _centre_outside(self, image: np.ndarray) -> bool:
        assert self.landmarks is not None
        cx, cy = self.landmarks.mean(axis=0)
        h, w = image.shape[:2]
        return not (0 <= cx < w and 0 <= cy < h)

    def _lose(self, index: int, why: str) -> None:
        log.info("%s: face lost at frame %d (%s)", self.name, index, why)
        self.n_lost += 1
        self._reset()
        self.shot = -1
        self._next_detect = (
            self.n_frames - 1 + max(1, int(round(self.config.redetect_s * self.fps)))
        )

    def _emit(self, index: int, time_s: float, image: np.ndarray, updated: bool) -> TrackedFrame:
        if not self.tracking or self._cropper is None:
            return TrackedFrame(index, time_s, image, None, None, False, -1, None, math.nan, False)
        assert self.landmarks is not None
        h, w = image.shape[:2]
        # the jaw line may leave the frame (a tightly cropped face): the crop is fitted inside
        # the frame anyway, and no region but the chin's edge reads the jaw
        inner = self.landmarks[INNER_FACE]
        x0, y0 = inner.min(axis=0)
        x1, y1 = inner.max(axis=0)
        slack = 0.02 * face_width(self.landmarks)
        inside = x0 >= -slack and y0 >= -slack and x1 <= w - 1 + slack and y1 <= h - 1 + slack
        crop = self._cropper(image) if inside else None
        if crop is not None and updated:
            if self._ref_crop is None:
                self._ref_crop = crop.astype(np.float32)
            elif _similarity(crop, self._ref_crop) < self.config.min_similarity:
                self._check_now = True
        points = self._cropper.points(self.landmarks)
        if inside:
            self.n_face += 1
        if updated or self._ear is None:
            self._ear = eye_aspect_ratio(self.landmarks)
        ear = self._ear if inside else math.nan
        return TrackedFrame(
            index,
            time_s,
            image,
            crop,
            points,
            inside,
            self.shot,
            self._cropper.matrix,
            ear,
            updated,
        )

    def run(self, frames: Iterable) -> Iterator[TrackedFrame]:
        """Track over `frames`: (index, image) pairs, (index, image, time_s) triples or objects
        with .index/.image/.time_s (`mekit.spot.input.video.Frame`). Raises `NoFaceError` naming the
        video when the frames end without a face ever found."""
        for item in frames:
            if hasattr(item, "image"):
                index, image, time_s = item.index, item.image, item.time_s
            elif len(item) == 3:
                index, image, time_s = item
            else:
                (index, image), time_s = item, math.nan
            yield self.update(index, image, time_s)
        self.check_found()

    def check_found(self) -> None:
        """Raise `NoFaceError` if frames were seen but no face in any of them."""
        if self.n_frames and self.n_shots == 0:
            raise NoFaceError(
                f"{self.name}: no face found in {self.n_frames} frames (the detector tried the "
                f"first frame and then every {self.config.redetect_s:g} s); is a frontal face "
                "visible, at least about 80 px wide?"
            )


def _anchor(landmarks: np.ndarray) -> np.ndarray:
    """Mean of the points no expression moves much: eye corners and nose bridge, px."""
    return landmarks[list(STABLE)].mean(axis=0).astype(np.float64)


def _span(landmarks: np.ndarray) -> float:
    """Outer eye corner to outer eye corner, px (at least 1)."""
    return max(1.0, float(np.linalg.norm(landmarks[45] - landmarks[36])))


def _roll(landmarks: np.ndarray) -> float:
    left = landmarks[list(LEFT_EYE)].mean(axis=0)
    right = landmarks[list(RIGHT_EYE)].mean(axis=0)
    return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _similarity(crop: np.ndarray, ref: np.ndarray) -> float:
    """Normalised cross-correlation of two crops, in [-1, 1]."""
    a = crop.astype(np.float32) - crop.mean()
    b = ref - ref.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0
