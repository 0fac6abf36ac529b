"""Throughput and memory of the spotting front end (decode + face track + flow + signals).

Builds a 640 x 480, 200 fps H.264 test video (not timed): a synthetic long video
(`mekit.synth`, micro and macro expressions among blinks, head shifts, drift, flicker and
noise) scaled x2 (face about 250 px wide) onto a textured 640 x 480 background; then a copy
`--repeat` times as long (the same packets, stream-copied with shifted timestamps). Each video
runs `mekit.spot.input.signals.compute_signals` in a fresh process, which reports frames/s (wall
clock and per CPU second), its resident memory once the dlib models are loaded and the peak
while it runs (sampled every 20 ms): the growth shows whether memory stays flat in the
video's length.

    python benchmarks/spot_throughput.py [--seconds 20] [--repeat 3] [--method farneback]
        [--face-size 64] [--work DIR]

Target (issue 7, 2 CPU cores): >= 200 frames/s on 640 x 480, memory flat in the length.
The machine's load average is printed: other processes on the same cores slow the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 200


def make_base(folder: Path, seconds: float) -> Path:
    """The synthetic long video, 192 px, 200 fps."""
    from mekit.synth import SynthConfig
    from mekit.synth.long_video import write_long_video

    config = SynthConfig(  # the default's density: 6 micro and 2 macro per 12 s
        subjects=1,
        long_video_fps=(float(FPS),),
        long_video_seconds=seconds,
        micro_per_video=max(1, round(seconds / 2)),
        macro_per_video=max(1, round(seconds / 6)),
    )
    path, _, _ = write_long_video(folder, 0, config, progress=False)
    return path


def make_640(base: Path, out: Path, fps: float = FPS) -> Path:
    """`base` scaled x2 onto a 640 x 480 textured background, H.264 yuv420p at `fps`."""
    import av
    import cv2

    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8), (0, 0), 4)
    side = 384
    y0, x0 = (HEIGHT - side) // 2, (WIDTH - side) // 2
    with av.open(str(base)) as source, av.open(str(out), "w") as target:
        stream = target.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in source.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            canvas = background.copy()
            canvas[y0 : y0 + side, x0 : x0 + side] = cv2.resize(
                image, (side, side), interpolation=cv2.INTER_CUBIC
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24")):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    return out


def repeat(video: Path, times: int, out: Path) -> Path:
    """`video`'s packets `times` over, timestamps shifted (no re-encoding)."""
    import av

    with av.open(str(video)) as source:
        packets = []
        src = source.streams.video[0]
        for packet in source.demux(src):
            if packet.size:
                packets.append((bytes(packet), packet.pts, packet.dts, packet.is_keyframe))
        length = max(p[1] for p in packets) + int(round(1 / (FPS * src.time_base)))
        with av.open(str(out), "w") as target:
            dst = target.add_stream_from_template(src)
            for k in range(times):
                for data, pts, dts, key in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + k * length, dts + k * length
                    packet.is_keyframe = key
                    packet.time_base = src.time_base
                    packet.stream = dst
                    target.mux(packet)
    return out


def current_rss_mb() -> float:
    """Resident memory now, MB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler(threading.Thread):
    """Samples the resident memory every 20 ms; `peak` is the largest seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = current_rss_mb()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, current_rss_mb())
            time.sleep(0.02)


def child(video: str, method: str, face_size: int) -> None:
    """Run in a fresh process: time compute_signals on `video`, print a JSON line."""
    from mekit.faces.landmarks import dlib_models
    from mekit.spot.input.signals import compute_signals

    dlib_models()  # model loading is not part of the per-frame cost
    before = current_rss_mb()
    sampler = PeakSampler()
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    signals = compute_signals(video, method=method, face_size=face_size, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sampler.running = False
    sampler.join()
    print(
        json.dumps(
            {
                "frames": len(signals),
                "wall_s": wall,
                "cpu_s": cpu,
                "rss_before_mb": before,
                "rss_peak_mb": max(sampler.peak, current_rss_mb()),
                "face_ok": float(signals.face_ok.mean()),
                "shots": int(signals.shot.max()) + 1,
                "valid": float(signals.valid.mean()),
            }
        )
    )


def measure(video: Path, method: str, face_size: int) -> dict:
    command = [sys.executable, __file__, "--child", str(video), "--method", method]
    command += ["--face-size", str(face_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the short video")
    parser.add_argument("--repeat", type=int, default=3, help="the long video is this x longer")
    parser.add_argument("--method", default="farneback", help="flow method(s), comma-separated")
    parser.add_argument("--face-size", type=int, default=64)
    parser.add_argument("--work", help="keep the videos here and reuse them (default: temp dir)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.method, args.face_size)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        tag = f"{args.seconds:g}s"
        short, long = work / f"spot_{tag}_640.mp4", work / f"spot_{tag}_640_x{args.repeat}.mp4"
        if not short.exists():
            t0 = time.perf_counter()
            base = make_base(work, args.seconds)
            make_640(base, short)
            print(f"made {short.name} in {time.perf_counter() - t0:.0f} s", flush=True)
        if not long.exists():
            repeat(short, args.repeat, long)
        print(
            f"CPU cores: {os.cpu_count()}, load average before: "
            f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; face crop {args.face_size} px"
        )
        header = (
            f"{'video':<12}{'method':<11}{'frames':>7}{'video s':>9}{'wall s':>8}"
            f"{'frames/s':>10}{'per CPU s':>10}{'RSS start':>11}{'RSS peak':>10}{'growth':>8}"
            f"{'face':>6}{'shots':>6}"
        )
        print(header)
        print("-" * len(header))
        for method in args.method.split(","):
            for label, video in (
                (f"{args.seconds:g} s", short),
                (f"{args.seconds * args.repeat:g} s", long),
            ):
                r = measure(video, method, args.face_size)
                print(
                    f"{label:<12}{method:<11}{r['frames']:>7}{r['frames'] / FPS:>9.1f}"
                    f"{r['wall_s']:>8.1f}{r['frames'] / r['wall_s']:>10.0f}"
                    f"{r['frames'] / r['cpu_s']:>10.0f}{r['rss_before_mb']:>9.0f}MB"
                    f"{r['rss_peak_mb']:>8.0f}MB{r['rss_peak_mb'] - r['rss_before_mb']:>6.0f}MB"
                    f"{100 * r['face_ok']:>5.0f}%{r['shots']:>6}",
                    flush=True,
                )
        print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
