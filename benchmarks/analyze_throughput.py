"""Wall time, per-stage time and peak memory of `mekit analyze` on a 640 x 480, 30 fps video.

Builds (not timed) a synthetic long video (`mekit.synth`: micro and macro expressions among
blinks, head shifts, drift, flicker and noise; one micro every `--micro-every` s, one macro
every `--macro-every` s) scaled x2 (face about 250 px wide) onto a textured 640 x 480
background, H.264, `--seconds` long, and one half as long; or takes `--video PATH`. Each video
is analysed by `mekit.app.analyze.analyze_video` in a fresh process, which prints the wall
time, frames/s, the realtime factor (video seconds per wall second), the seconds of each stage
and its peak resident memory (`resource.getrusage`, ru_maxrss): the peak of the half-length
run beside the full one shows whether memory stays flat in the video's length.

    python benchmarks/analyze_throughput.py [--seconds 60] [--model MODEL] [--work DIR]
        [--video PATH] [--no-video-output]

The model: `--model`, else as `mekit analyze` finds one ($MEKIT_MODEL, the demo model of
`make demo`), else an untrained STSTNet written to the work folder (the same computation;
its emotions mean nothing). Target (2 CPU cores): a 60 s video in under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT, FPS = 640, 480, 30


def make_video(folder: Path, seconds: float, micro_every: float, macro_every: float) -> Path:
    """The synthetic long video at 192 px, then x2 onto a 640 x 480 background."""
    from spot_throughput import make_640  # beside this script: the same 640 x 480 video

    from mekit.synth import SynthConfig
    from mekit.synth.long_video import write_long_video

    config = SynthConfig(
        subjects=1,
        long_video_fps=(float(FPS),),
        long_video_seconds=seconds,
        micro_per_video=max(1, round(seconds / micro_every)),
        macro_per_video=max(1, round(seconds / macro_every)),
    )
    base, _, _ = write_long_video(folder, 0, config, progress=False)
    out = make_640(base, folder / f"analyze_{seconds:g}s_{WIDTH}x{HEIGHT}.mp4", fps=FPS)
    base.unlink()
    return out


def find_model(given: str | None, work: Path) -> Path:
    from mekit.app.analyze import resolve_model
    from mekit.errors import MekitError

    try:
        return resolve_model(Path(given) if given else None)
    except MekitError:
        if given:
            raise
    from mekit.models import create_model
    from mekit.train.checkpoint import save_model

    print("no model found (run `make demo` for the demo model): using an untrained STSTNet")
    return save_model(
        work / "untrained-ststnet",
        create_model("ststnet", 3),
        model_name="ststnet",
        labels=["negative", "positive", "surprise"],
        model_kwargs={},
        input={},
        config={},
        training={"trained_on": "nothing (benchmark)"},
    )[1]


def child(video: str, model: str, out: str, write_video: bool) -> None:
    """Run in a fresh process: analyse `video`, print one JSON line."""
    from mekit.app.analyze import AnalyzeConfig, analyze_video

    wall, cpu = time.perf_counter(), time.process_time()
    analysis = analyze_video(Path(video), Path(out), Path(model), AnalyzeConfig(video=write_video))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: kilobytes
    kinds = [e.kind for e in analysis.events]
    print(
        json.dumps(
            {
                "frames": analysis.video.n_frames,
                "duration_s": analysis.video.duration_s,
                "wall_s": wall,
                "cpu_s": cpu,
                "stages": analysis.timings,
                "peak_mb": peak_kb / 1024,
                "micro": kinds.count("micro"),
                "macro": kinds.count("macro"),
                "unknown": sum(e.emotion == "unknown" for e in analysis.events),
                "mp4_mb": (Path(out) / "annotated.mp4").stat().st_size / 2**20
                if write_video
                else 0.0,
            }
        )
    )


def measure(video: Path, model: Path, out: Path, write_video: bool) -> dict:
    command = [sys.executable, __file__, "--child", str(video), "--model", str(model)]
    command += ["--out", str(out)] + ([] if write_video else ["--no-video-output"])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the analysis of {video} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the test video")
    parser.add_argument("--micro-every", type=float, default=4.0, help="s between micro events")
    parser.add_argument("--macro-every", type=float, default=10.0, help="s between macro events")
    parser.add_argument("--model", help="model file (default: as mekit analyze finds one)")
    parser.add_argument("--video", help="analyse this video instead (no half-length run)")
    parser.add_argument("--work", help="keep the videos and outputs here (default: temp dir)")
    parser.add_argument("--no-video-output", action="store_true", help="skip annotated.mp4")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.out, not args.no_video_output)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = find_model(args.model, work)
        if args.video:
            videos = [Path(args.video)]
        else:
            videos = []
            for seconds in (args.seconds / 2, args.seconds):
                path = work / f"analyze_{seconds:g}s_{WIDTH}x{HEIGHT}.mp4"
                if not path.exists():
                    t0 = time.perf_counter()
                    path = make_video(work, seconds, args.micro_every, args.macro_every)
                    print(f"made {path.name} in {time.perf_counter() - t0:.0f} s", flush=True)
                videos.append(path)
        print(
            f"CPU cores: {os.cpu_count()}, load average before: "
            f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; model {model}"
        )
        header = (
            f"{'video':<28}{'frames':>7}{'video s':>8}{'wall s':>8}{'frames/s':>9}"
            f"{'x realtime':>11}{'spot':>7}{'recog':>7}{'render':>7}{'report':>7}"
            f"{'peak RSS':>10}{'events':>8}"
        )
        print(header)
        print("-" * len(header))
        for video in videos:
            r = measure(video, model, work / f"out_{video.stem}", not args.no_video_output)
            stages = r["stages"]
            print(
                f"{video.name[:27]:<28}{r['frames']:>7}{r['duration_s']:>8.1f}{r['wall_s']:>8.1f}"
                f"{r['frames'] / r['wall_s']:>9.0f}{r['duration_s'] / r['wall_s']:>11.2f}"
                + "".join(
                    f"{stages.get(s, 0.0):>7.1f}"
                    for s in ("spotting", "recognising", "rendering", "report")
                )
                + f"{r['peak_mb']:>8.0f}MB{r['micro'] + r['macro']:>4} ({r['micro']}m "
                f"{r['macro']}M)",
                flush=True,
            )
        print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
