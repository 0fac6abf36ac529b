import av
import numpy as np
import pandas as pd
import pytest

from mekit.errors import MekitError
from mekit.synth import SynthConfig, generate_corpus
from mekit.synth.long_video import DISTRACTOR_COLUMNS, INTERVAL_COLUMNS, plan_video

VIDEO = SynthConfig(
    subjects=1,
    clips_per_subject=1,
    duration_ms=(40.0, 80.0),
    long_video_fps=(30.0, 100.0),
    long_video_seconds=5.0,
    macro_duration_ms=(500.0, 1000.0),
    micro_per_video=2,
    macro_per_video=1,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("lv") / "out", VIDEO, progress=False)


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        return [f.to_ndarray(format="bgr24") for f in container.decode(stream)]


def test_videos_decode_with_the_expected_frame_count(videos):
    assert len(videos.long_videos) == 2
    for path, fps in zip(videos.long_videos, VIDEO.long_video_fps, strict=True):
        frames = decode(path)
        assert len(frames) == round(VIDEO.long_video_seconds * fps)
        assert frames[0].shape == (192, 192, 3)
        assert frames[0].std() > 20  # a picture, not a blank


def test_intervals_and_distractors_lie_inside_and_apart(videos):
    folder = videos.out / "long_videos"
    intervals = pd.read_csv(folder / "intervals.csv", dtype={"subject": str})
    distractors = pd.read_csv(folder / "distractors.csv")
    assert tuple(intervals.columns) == INTERVAL_COLUMNS
    assert tuple(distractors.columns) == DISTRACTOR_COLUMNS
    assert set(distractors.kind) <= {"blink", "head_shift"} and "blink" in set(distractors.kind)
    for path, fps in zip(videos.long_videos, VIDEO.long_video_fps, strict=True):
        n = round(VIDEO.long_video_seconds * fps)
        mine = intervals[intervals.video == path.stem]
        assert Counter_of(mine.type) == {"micro": 2, "macro": 1}
        assert (mine.fps == fps).all()
        assert ((0 <= mine.onset) & (mine.onset < mine.apex) & (mine.apex < mine.offset)).all()
        assert (mine.offset < n).all()
        micro = mine[mine.type == "micro"]
        assert ((micro.offset - micro.onset) * 1000 / fps <= 500 + 1000 / fps).all()
        spans = [(r.onset, r.offset) for r in mine.itertuples()]
        other = distractors[distractors.video == path.stem]
        assert ((0 <= other.frame_start) & (other.frame_end < n)).all()
        spans += [(r.frame_start, r.frame_end) for r in other.itertuples()]
        spans.sort()
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


def Counter_of(column) -> dict:
    return column.value_counts().to_dict()


def test_events_move_the_face_where_the_table_says(tmp_path):
    config = SynthConfig(
        **{**VIDEO.__dict__, "nuisances": False, "long_video_fps": (30.0,), "micro_per_video": 1}
    )
    summary = generate_corpus(tmp_path / "out", config, progress=False)
    frames = [f.astype(float) for f in decode(summary.long_videos[0])]
    intervals = pd.read_csv(summary.out / "long_videos" / "intervals.csv")
    macro = intervals[intervals.type == "macro"].iloc[0]

    def change(a: int, b: int) -> float:
        return float(np.abs(frames[a] - frames[b]).mean())

    moved = change(macro.onset, macro.apex)
    assert moved > 4 * change(macro.onset, macro.offset)  # back to neutral at offset
    assert moved > 4 * change(0, max(1, macro.onset - 2))  # quiet before the event


def test_same_seed_same_video_bytes(videos, tmp_path):
    again = generate_corpus(tmp_path / "again", VIDEO, progress=False)
    for a, b in zip(videos.long_videos, again.long_videos, strict=True):
        assert a.read_bytes() == b.read_bytes()
    table = "long_videos/intervals.csv"
    assert (videos.out / table).read_bytes() == (again.out / table).read_bytes()


def test_too_short_a_video_for_its_events_raises_before_writing(tmp_path):
    config = SynthConfig(long_video_seconds=1.0, micro_per_video=6, macro_per_video=2)
    with pytest.raises(MekitError, match="long_video_seconds"):
        plan_video(config, 30.0, np.random.default_rng(0))
    with pytest.raises(MekitError, match="long_video_seconds"):
        generate_corpus(tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out").exists()


def test_default_videos_fit_their_events_for_many_seeds():
    for seed in range(40):
        config = SynthConfig(seed=seed)
        for fps in config.long_video_fps:
            events = plan_video(config, fps, np.random.default_rng(seed))
            assert events[-1].start + events[-1].length < config.long_video_seconds * fps
