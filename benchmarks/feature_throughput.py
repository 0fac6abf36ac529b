"""Throughput of faces + features over a 442-sample corpus (the MEGC composite's size).

Synthesises 34 subjects x 13 clips (not timed), then times, with `--workers` processes:
onset->apex features (dlib alignment + Farneback + strain, 128 px faces) from a cold cache and
again warm, and 11-keyframe features (improved Farneback) from a cold cache.

    python benchmarks/feature_throughput.py [--workers 2] [--out DIR]

Targets (issue 4, 2 CPU cores): onset->apex < 60 s cold, < 5 s warm; 11 keyframes < 3 min.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mekit.data.casme2 import load_casme2
from mekit.motion import FeatureConfig, FeatureKind
from mekit.motion.extract import extract_features
from mekit.synth import SynthConfig, generate_corpus


def timed(label: str, samples, config: FeatureConfig, cache: Path, workers: int) -> None:
    t0 = time.perf_counter()
    result = extract_features(samples, config, cache_dir=cache, workers=workers, progress=False)
    seconds = time.perf_counter() - t0
    print(
        f"{label:<34}{seconds:>8.1f} s  {len(result.ids) / seconds:>7.1f} samples/s  "
        f"cache hits {result.cache_hits}, skipped {len(result.skipped)}, "
        f"shape {tuple(result.features.shape[1:])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="keep the corpus and cache here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        corpus = root / "corpus"
        if not (corpus / "synth.json").exists():
            config = SynthConfig(subjects=34, clips_per_subject=13, long_videos=False)
            generate_corpus(corpus, config, progress=False)
        samples = load_casme2(corpus, dataset="synthetic").samples
        print(f"{len(samples)} samples, {args.workers} workers")
        farneback = FeatureConfig(kind=FeatureKind.ONSET_APEX, method="farneback")
        timed("onset->apex farneback, cold", samples, farneback, root / "cache1", args.workers)
        timed("onset->apex farneback, warm", samples, farneback, root / "cache1", args.workers)
        tvl1 = FeatureConfig(kind=FeatureKind.ONSET_APEX, method="tvl1")
        timed("onset->apex tvl1, cold", samples, tvl1, root / "cache2", args.workers)
        keyframes = FeatureConfig(kind=FeatureKind.KEYFRAMES, method="farneback", keyframes=11)
        timed("11 keyframes farneback, cold", samples, keyframes, root / "cache3", args.workers)


if __name__ == "__main__":
    main()
