"""Speaking segments of a video, from the mouth's opening and closing and from the sound track.

Speech moves the lips, jaw and cheeks by many px several times a second; a spotter that reads
the lower face would report every syllable as a micro-expression. `speaking` marks the frames
where the person is speaking, from two cues:

- the mouth: the inner-lip gap over the outer-eye-corner span (`mouth_aperture`, scale-free) of
  the tracked landmarks opens and closes again and again: at least `min_cycles` openings of at
  least `min_opening` (prominence of the peak) within any `window_s` seconds. A single opening
  (a surprised mouth, a smile baring the teeth) is not speech;
- the sound, when the file has an audio stream (`audio_envelope`): the level of each frame's
  stretch of sound (dB re full scale) stands `audio_db` above the recording's quiet level while
  the mouth moves (one opening nearby is enough then; sound alone, with a still mouth, may be
  someone else speaking).

The marked frames are widened by `margin_s` on each side and gaps under `bridge_s` are closed:
speech is a stretch of time, not a set of syllables.
"""

from __future__ import annotations

import logging
import math
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, signal

from mekit.config import Config, check_range

log = logging.getLogger(__name__)

INNER_LIPS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points facing each other


@dataclass(frozen=True)
class SpeechConfig(Config, section="spot.speech"):
    """How speaking segments are found (see the module doc). window_s: the stretch in which
    `min_cycles` mouth openings mean speech; min_opening: an opening's prominence, in outer-eye
    spans; audio_db: sound this far above the quiet level (its 10th percentile) is voice;
    margin_s, bridge_s: widening and gap closing of the marked frames."""

    window_s: float = 1.5
    min_cycles: int = 2
    min_opening: float = 0.04
    audio_db: float = 15.0
    margin_s: float = 0.25
    bridge_s: float = 0.5

    def check(self) -> None:
        check_range(self, "window_s", 0, lo_open=True)
        check_range(self, "min_cycles", 1)


def mouth_aperture(landmarks: np.ndarray) -> float:
    """Inner-lip gap over the outer-eye-corner span of (68, 2) landmarks (any px); about 0 with
    the lips closed, 0.1-0.5 open while speaking."""
    span = float(np.linalg.norm(landmarks[45] - landmarks[36]))
    if span <= 0:
        return math.nan
    gap = np.mean([np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in INNER_LIPS])
    return float(gap) / span


def audio_envelope(path: str | Path, times_s: np.ndarray) -> np.ndarray | None:
    """(N,) float32 level of the sound around each frame time (dB re full scale, RMS over one
    frame step), or None when the file has no audio stream or it cannot be decoded. Streams the
    sound as 16 kHz mono; keeps one number per 10 ms."""
    import av

    times_s = np.asarray(times_s, dtype=np.float64)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError):
        return None
    rate, hop = 16000, 160  # 10 ms
    energy = array("d")  # mean square per 10 ms: 800 bytes a second of sound
    start: float | None = None
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        video = container.streams.video[0] if container.streams.video else None
        # frame times count from the first video frame (mekit.spot.input.video)
        zero = 0.0
        if video is not None and video.start_time is not None and video.time_base is not None:
            zero = float(video.start_time * video.time_base)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        carry = np.zeros(0, np.float32)
        try:
            for frame in container.decode(stream):
                if start is None:
                    start = float(frame.time) if frame.time is not None else 0.0
                for mono in resampler.resample(frame):
                    carry = np.concatenate([carry, mono.to_ndarray().reshape(-1)])
                whole = len(carry) // hop * hop
                if whole:
                    energy.extend(np.mean(carry[:whole].reshape(-1, hop) ** 2, axis=1))
                    carry = carry[whole:]
        except av.error.FFmpegError as error:
            log.info("%s: audio read stopped: %s", path, error)
    if not energy or start is None:
        return None
    level = 10.0 * np.log10(np.maximum(np.frombuffer(energy, np.float64), 1e-10))
    centres = start - zero + (hop / rate) * (np.arange(len(level)) + 0.5)
    steps = np.diff(times_s)
    width = float(np.median(steps)) if len(steps) else hop / rate
    level = ndimage.uniform_filter1d(level, max(1, int(round(width * rate / hop))), mode="nearest")
    return np.interp(times_s, centres, level).astype(np.float32)


def speaking(
    mouth: np.ndarray,
    times_s: np.ndarray,
    audio_db: np.ndarray | None = None,
    config: SpeechConfig = SpeechConfig(),
) -> np.ndarray:
    """(N,) bool: frames where the person speaks (see the module doc). `mouth`: (N,)
    `mouth_aperture` per frame (NaN without a face); `times_s`: (N,) frame times; `audio_db`:
    (N,) `audio_envelope` or None."""
    mouth = np.asarray(mouth, dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float64)
    n = len(mouth)
    out = np.zeros(n, dtype=bool)
    good = np.isfinite(mouth)
    if n < 3 or good.sum() < 3:
        return out
    step = float(np.median(np.diff(times))) if n > 1 else 0.04
    step = step if step > 0 and math.isfinite(step) else 0.04
    idx = np.arange(n)
    filled = np.interp(idx, idx[good], mouth[good])
    filled = ndimage.uniform_filter1d(filled, max(1, int(round(0.04 / step))), mode="nearest")
    peaks, _ = signal.find_peaks(
        filled, prominence=config.min_opening, distance=max(1, int(round(0.12 / step)))
    )
    peaks = peaks[good[peaks]]
    window = config.window_s
    for i, p in enumerate(peaks):
        # openings within window_s that end with this one
        first = np.searchsorted(times[peaks], times[p] - window, side="left")
        if i - first + 1 >= config.min_cycles:
            out[peaks[first] : p + 1] = True
    if audio_db is not None and len(audio_db) == n and np.isfinite(audio_db).any():
        level = np.asarray(audio_db, dtype=np.float64)
        quiet = float(np.nanpercentile(level, 10))
        voiced = np.isfinite(level) & (level >= quiet + config.audio_db)
        near = np.zeros(n, dtype=bool)
        reach = max(1, int(round(0.5 / step)))
        for p in peaks:
            near[max(0, p - reach) : p + reach + 1] = True
        out |= voiced & near
    out = _close(out, int(round(config.bridge_s / step)))
    margin = int(round(config.margin_s / step))
    if margin > 0 and out.any():
        out = ndimage.binary_dilation(out, iterations=margin)
    return out


def _close(mask: np.ndarray, gap: int) -> np.ndarray:
    """mask with runs of False shorter than `gap` between two True runs set True."""
    if gap <= 0 or not mask.any():
        return mask
    out = mask.copy()
    on = np.flatnonzero(mask)
    holes = np.flatnonzero(np.diff(on) > 1)
    for h in holes:
        a, b = on[h] + 1, on[h + 1]
        if b - a < gap:
            out[a:b] = True
    return out
