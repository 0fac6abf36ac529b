"""Flow accuracy against a known displacement field: synthetic AU events of 1-2 px.

For each clip of a small synthetic corpus the true onset -> apex displacement is known
(`mekit.synth.true_apex_field`). We compute each flow method on the rendered onset and apex
frames and report the mean end-point error (EPE, px) inside the face mask, and separately in
the pixels where the true motion is at least 0.25 px ("moving"). Two conditions: clean
rendering, and sensor noise + flicker + JPEG (no head motion, so the truth stays exact).

    python benchmarks/flow_accuracy.py [--subjects 4] [--clips 6]

Targets (issue 4): mean EPE inside the face <= 0.3 px (TV-L1), <= 0.5 px (Farneback).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mekit.motion import compute_flow
from mekit.synth import SynthConfig, generate_corpus, true_apex_field
from mekit.synth.subjects import subject_identity

METHODS = ("tvl1", "farneback", "dis")


def measure(config: SynthConfig, out: Path) -> pd.DataFrame:
    generate_corpus(out, config, progress=False)
    truth = pd.read_csv(out / "ground_truth.csv", dtype={"subject": str})
    rows = []
    for s in range(config.subjects):
        face = subject_identity(s, config).mask > 0.5
        clips = truth[truth["subject"] == f"{s + 1:02d}"].reset_index(drop=True)
        for j, clip in clips.iterrows():
            folder = out / f"sub{clip['subject']}" / clip["clip"]
            onset, apex = (
                cv2.imread(str(folder / f"img{clip[k]}.jpg"), cv2.IMREAD_GRAYSCALE)
                for k in ("onset", "apex")
            )
            field = true_apex_field(config, s, j).transpose(2, 0, 1)
            moving = face & (np.hypot(*field) >= 0.25)
            for method in METHODS:
                t0 = time.perf_counter()
                flow = compute_flow(onset, apex, method)
                seconds = time.perf_counter() - t0
                epe = np.hypot(*(flow - field))
                rows.append(
                    {
                        "method": method,
                        "clip": f"{clip['subject']}/{clip['clip']}",
                        "amplitude_px": clip["apex_displacement_px"],
                        "epe_face": float(epe[face].mean()),
                        "epe_moving": float(epe[moving].mean()) if moving.any() else np.nan,
                        "ms": 1000 * seconds,
                    }
                )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--clips", type=int, default=6)
    args = parser.parse_args()
    base = SynthConfig(
        subjects=args.subjects,
        clips_per_subject=args.clips,
        amplitude_px=(1.0, 2.0),
        long_videos=False,
        seed=7,
    )
    conditions = {
        "clean": replace(base, nuisances=False),
        "noise+flicker+jpeg": replace(base, drift_px=0.0, rotation_deg=0.0, blink_prob=0.0),
    }
    for name, config in conditions.items():
        with tempfile.TemporaryDirectory() as tmp:
            table = measure(config, Path(tmp) / "corpus")
        summary = table.groupby("method")[["epe_face", "epe_moving", "ms"]].mean()
        print(
            f"\n{name}: {table['clip'].nunique()} AU events, apex 1-2 px, frame "
            f"{config.frame_size} px (face ~{config.face_width:.0f} px)"
        )
        print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
