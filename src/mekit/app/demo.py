"""The practitioner's half of `mekit demo`: `mekit analyze` on a synthetic video whose events
are known, scored against them.

`demo_analysis(out, model)` writes one synthetic long video (`mekit.synth`: micro- and
macro-expressions among blinks, head shifts, drift, flicker and noise, with its
`intervals.csv`) to `out/video/` (reused when already there) and analyses it into
`out/analysis/` (report.html, annotated.mp4, ...), as `mekit analyze` would a user's video.
The spotted intervals are scored against the planted ones with the MEGC rule (IoU >= 0.5), and
the emotions of the matched ones against the planted emotions (mapped to the model's classes by
the MEGC 2019 scheme): recognition UF1 and the spot-then-recognise score (their product).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from mekit.app.analyze import Progress, analyze_video
from mekit.app.result import Analysis
from mekit.data.labels import load_scheme
from mekit.spot.metrics import (
    Interval,
    SpotScores,
    match_corpus,
    recognition_f1,
    spot_then_recognise,
    spotting_scores,
)
from mekit.spot.run import read_truth
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_video, write_long_video_tables

# 30 fps like a webcam; a subject and seed the demo corpus does not have.
DEMO_VIDEO = SynthConfig(
    subjects=1,
    seed=1000,
    long_video_fps=(30.0,),
    long_video_seconds=20.0,
    micro_per_video=4,
    macro_per_video=2,
)


@dataclass(frozen=True)
class DemoAnalysis:
    video: Path
    analysis: Analysis
    truth: tuple[Interval, ...]
    scores: SpotScores  # the spotted intervals against the planted ones, both kinds
    recognition_uf1: float  # emotions of the matched intervals against the planted ones
    spot_then_recognise: float


def demo_video(folder: Path) -> Path:
    """The demo's synthetic video in `folder` (written aside and renamed when complete)."""
    folder = Path(folder)
    done = sorted(folder.glob("*.mp4")) if (folder / "intervals.csv").is_file() else []
    if done:
        return done[0]
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    result = write_long_video(partial, 0, DEMO_VIDEO, progress=False)
    write_long_video_tables(partial, [result])
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder / result[0].name


def _truth(video: Path) -> tuple[Interval, ...]:
    """The planted events, their emotions mapped to MEGC 2019's classes (the demo model's)."""
    scheme = load_scheme("megc2019")

    def label(emotion: str) -> str:
        key = emotion.strip().lower()
        return scheme.mapping.get(("synthetic", key)) or scheme.mapping.get(("*", key)) or key

    planted = read_truth(video.parent / "intervals.csv").get(video.stem, ())
    return tuple(replace(t, emotion=label(t.emotion)) for t in planted)


def demo_analysis(out: Path, model: Path, progress: Progress | None = None) -> DemoAnalysis:
    """Analyse the demo video with `model` into `out/analysis`; score its spotting and the
    emotions of what it spotted."""
    out = Path(out)
    video = demo_video(out / "video")
    analysis = analyze_video(video, out / "analysis", model, progress=progress)
    truth = _truth(video)
    spotted = [
        Interval(onset=e.onset, offset=e.offset, kind=e.kind, apex=e.apex, emotion=e.emotion)
        for e in analysis.events
    ]
    predicted, planted = {video.stem: spotted}, {video.stem: list(truth)}
    scores = spotting_scores(predicted, planted)
    pairs = [p for m in match_corpus(predicted, planted).values() for p in m.pairs]
    uf1 = recognition_f1(pairs, analysis.model.labels)
    return DemoAnalysis(video, analysis, truth, scores, uf1, spot_then_recognise(scores.f1, uf1))
