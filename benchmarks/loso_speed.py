"""LOSO training speed: the plain per-fold loop against the batched fold ensemble.

STSTNet, leave-one-subject-out over a synthetic 442-sample, 68-subject, 3-class corpus of
28 x 28 u/v/strain flow images, with the paper's schedule (800 epochs, batch 256, Adam lr
5e-5). The plain loop (`mekit.train.loop.fit` + `predict_proba`, one fold after another) runs
a few folds and its time per fold-epoch is extrapolated to all 68 x 800; the ensemble
(`mekit.train.ensemble.run_loso_ensemble`) runs all folds. Accuracy and UF1 are compared on
the test samples of the folds both ran.

    python benchmarks/loso_speed.py                  # full: 68 folds x 800 epochs (~10 min)
    python benchmarks/loso_speed.py --quick          # 68 folds x 40 epochs, 2 plain folds
    python benchmarks/loso_speed.py --epochs 100 --folds 20 --plain-folds 3 --threads 2
    python benchmarks/loso_speed.py --device cuda    # on a GPU: fold-batched vs the plain loop
    python benchmarks/loso_speed.py --quick --batched --precision bf16   # that path, on a CPU

The plain loop uses `--threads` torch threads (TrainConfig.num_threads); the ensemble the same
number of threads, each training whole folds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np
import torch

from mekit.train.batched import BatchedTrainer
from mekit.train.device import resolve_device
from mekit.train.ensemble import native_kernel_available, run_loso_ensemble
from mekit.train.loop import TrainConfig, fit, predict_proba
from mekit.train.loso import cross_validate
from mekit.train.metrics import classification_metrics
from mekit.train.splits import Fold, loso_folds

LABELS = ("negative", "positive", "surprise")


def make_corpus(
    n: int = 442, n_subjects: int = 68, seed: int = 0, noise: float = 2.2
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Flow-like (n, 3, 28, 28) u/v/strain images with learnable class structure.

    Each class moves a different face region (brows down and together, mouth corners up and
    out, brows up), drawn with per-sample amplitude and position jitter, plus a smooth
    per-subject motion field and intensity (a subject offset a LOSO model must generalise
    over) and pixel noise. Strain is the magnitude of the flow's strain tensor. Subjects have
    uneven sample counts (at least 1) and classes are imbalanced, as in the composite corpus.
    The default noise makes the task about as hard as the real one (STSTNet reaches roughly
    0.7 accuracy / UF1 in LOSO with the paper's schedule). Returns X, y, subjects, ids.
    """
    rng = np.random.default_rng(seed)
    counts = 1 + rng.multinomial(n - n_subjects, rng.dirichlet(np.full(n_subjects, 1.5)))
    subjects = np.repeat([f"s{i:02d}" for i in range(n_subjects)], counts)
    y = rng.choice(3, size=n, p=[0.56, 0.25, 0.19])
    yy, xx = np.mgrid[0:28, 0:28] / 27.0

    def bump(cy: float, cx: float, s: float) -> np.ndarray:
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))

    subject_field = {}
    for s in np.unique(subjects):
        u = sum(rng.normal(0, 0.4) * bump(*rng.uniform(0.2, 0.8, 2), 0.25) for _ in range(3))
        v = sum(rng.normal(0, 0.4) * bump(*rng.uniform(0.2, 0.8, 2), 0.25) for _ in range(3))
        subject_field[s] = (np.asarray(u), np.asarray(v), rng.uniform(0.6, 1.4))

    X = np.zeros((n, 3, 28, 28), dtype=np.float32)
    for i in range(n):
        jy, jx = rng.normal(0, 0.03, 2)
        amp = rng.uniform(0.6, 1.4)
        if y[i] == 0:  # brows lowered and drawn together
            left, right = bump(0.3 + jy, 0.3 + jx, 0.08), bump(0.3 + jy, 0.7 + jx, 0.08)
            u, v = left - right, 0.8 * (left + right)
        elif y[i] == 1:  # mouth corners pulled up and out
            left, right = bump(0.72 + jy, 0.3 + jx, 0.08), bump(0.72 + jy, 0.7 + jx, 0.08)
            u, v = right - left, -0.8 * (left + right)
        else:  # brows raised
            brows = bump(0.25 + jy, 0.3 + jx, 0.1) + bump(0.25 + jy, 0.7 + jx, 0.1)
            u, v = 0.0 * brows, -1.2 * brows
        su, sv, scale = subject_field[subjects[i]]
        u = scale * amp * u + su + rng.normal(0, noise, (28, 28))
        v = scale * amp * v + sv + rng.normal(0, noise, (28, 28))
        uy, ux = np.gradient(u)
        vy, vx = np.gradient(v)
        strain = np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2)
        X[i] = np.stack([u, v, strain])
    ids = [f"{s}/clip{i:03d}" for i, s in enumerate(subjects)]
    return X, y.astype(np.int64), [str(s) for s in subjects], ids


def pick(folds: list[Fold], k: int) -> list[Fold]:
    """k folds spread evenly over `folds` (in order)."""
    if k >= len(folds):
        return list(folds)
    positions = np.unique(np.linspace(0, len(folds) - 1, k).round().astype(int))
    return [folds[i] for i in positions]


def run_plain(
    X: np.ndarray, y: np.ndarray, folds: list[Fold], config: TrainConfig
) -> tuple[float, dict[int, np.ndarray]]:
    """fit + predict_proba per fold, as run_loso does; (wall seconds, fold index -> probs)."""
    probs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    start = time.perf_counter()
    try:
        for fold in folds:
            cfg = dataclasses.replace(config, seed=config.seed + fold.index)
            result = fit("ststnet", len(LABELS), X[fold.train_idx], y[fold.train_idx], cfg)
            probs[fold.index] = predict_proba(result.model, X[fold.test_idx])
            print(
                f"  plain fold {fold.index:2d} ({fold.test_subject}): "
                f"{time.perf_counter() - start:7.1f} s so far",
                flush=True,
            )
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - start, probs


def metrics_on(y: np.ndarray, folds: list[Fold], probs: dict[int, np.ndarray]) -> tuple:
    idx = np.concatenate([f.test_idx for f in folds])
    pred = np.concatenate([probs[f.index].argmax(1) for f in folds])
    m = classification_metrics([LABELS[i] for i in y[idx]], [LABELS[i] for i in pred], LABELS)
    return m.accuracy, m.uf1, len(idx)


def agreement(folds, a: dict, b: dict) -> float:
    """Share of the common folds' samples whose predicted class is the same in `a` and `b`."""
    same = [np.argmax(a[f.index], 1) == np.argmax(b[f.index], 1) for f in folds]
    return float(np.concatenate(same).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=800)
    parser.add_argument("--folds", type=int, default=68, help="folds the ensemble trains")
    parser.add_argument("--plain-folds", type=int, default=3, help="folds the plain loop runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto", choices=("auto", "native", "torch"))
    parser.add_argument("--quick", action="store_true", help="40 epochs, 2 plain folds")
    parser.add_argument("--save", metavar="CSV", help="write the ensemble's predictions here")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (default: the fused kernel against the plain loop) or cuda/mps/auto (vmapped "
        "fold-batched training against the plain loop, both on that device)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        help="train.precision of both engines (auto: bf16 autocast on a GPU, fp32 on the CPU)",
    )
    parser.add_argument(
        "--batched",
        action="store_true",
        help="the ensemble by vmapped fold-batched training on the CPU too (what a GPU runs: "
        "a smoke run of that path; the fused kernel takes fp32 only)",
    )
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.plain_folds = min(args.epochs, 40), min(args.plain_folds, 2)

    X, y, subjects, ids = make_corpus(seed=args.seed)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=256,
        lr=5e-5,
        seed=args.seed,
        num_threads=args.threads,
        device=args.device,
        precision=args.precision,
    )
    kernel = resolve_device(args.device).type == "cpu" and not args.batched
    all_folds = loso_folds(subjects)
    ens_folds = pick(all_folds, args.folds)
    plain_folds = pick(ens_folds, args.plain_folds)
    print(
        f"STSTNet LOSO speed: {len(y)} samples, {len(all_folds)} subjects, 3 classes "
        f"{np.bincount(y, minlength=3).tolist()}, 28x28x3; {args.epochs} epochs, batch 256, "
        f"Adam lr 5e-5; {args.threads} threads on {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"native kernel: {native_kernel_available()}, device: {args.device}, precision: "
        f"{args.precision}, ensemble: {'fused kernel' if kernel else 'fold-batched (vmap)'}"
    )

    # The ensemble first: it is the figure the target is about.
    print(f"ensemble: {len(ens_folds)} folds x {args.epochs} epochs ...", flush=True)
    load = [os.getloadavg()[0]]
    start, cpu = time.perf_counter(), time.process_time()
    if kernel:
        result = run_loso_ensemble(
            X,
            y,
            subjects,
            ids,
            LABELS,
            config,
            folds=ens_folds,
            threads=args.threads,
            backend=args.backend,
            progress=False,
        )
    else:  # the fused kernel is CPU code: on a GPU (or with --batched) all folds go through vmap
        trainer = BatchedTrainer("ststnet", len(LABELS), config)
        result = cross_validate(X, y, subjects, ids, LABELS, trainer, ens_folds, progress=False)
    ens_s, ens_cpu = time.perf_counter() - start, time.process_time() - cpu
    load.append(os.getloadavg()[0])
    print(f"  ensemble: {ens_s:.1f} s", flush=True)

    print(f"plain loop: {len(plain_folds)} folds x {args.epochs} epochs ...", flush=True)
    cpu = time.process_time()
    plain_s, plain_probs = run_plain(X, y, plain_folds, config)
    plain_cpu = time.process_time() - cpu
    load.append(os.getloadavg()[0])

    frame = result.predictions
    if args.save:
        frame.to_csv(args.save, index=False)
    prob_cols = [f"prob_{lab}" for lab in LABELS]
    ens_probs = {
        f.index: frame.loc[frame["fold"] == f.index, prob_cols].to_numpy() for f in ens_folds
    }

    fold_epochs_full = len(all_folds) * args.epochs
    plain_ms = 1000 * plain_s / (len(plain_folds) * args.epochs)
    ens_ms = 1000 * ens_s / (len(ens_folds) * args.epochs)
    p_acc, p_uf1, n_common = metrics_on(y, plain_folds, plain_probs)
    e_acc, e_uf1, _ = metrics_on(y, plain_folds, ens_probs)
    e_all_acc, e_all_uf1, n_all = metrics_on(y, ens_folds, ens_probs)

    rows = [
        (
            "folds x epochs run",
            f"{len(plain_folds)} x {args.epochs}",
            f"{len(ens_folds)} x {args.epochs}",
        ),
        ("wall time (s)", f"{plain_s:.1f}", f"{ens_s:.1f}"),
        ("CPU time, all threads (s)", f"{plain_cpu:.1f}", f"{ens_cpu:.1f}"),
        ("ms per fold-epoch", f"{plain_ms:.2f}", f"{ens_ms:.2f}"),
        (
            f"{len(all_folds)} x {args.epochs} total (min)",
            f"{plain_ms * fold_epochs_full / 60000:.1f} (extrapolated)",
            f"{ens_ms * fold_epochs_full / 60000:.1f}"
            + (" (measured)" if len(ens_folds) == len(all_folds) else " (extrapolated)"),
        ),
        ("speed ratio (plain / ensemble)", "", f"{plain_ms / ens_ms:.1f}x"),
        (f"accuracy, common folds (n={n_common})", f"{p_acc:.3f}", f"{e_acc:.3f}"),
        (f"UF1, common folds (n={n_common})", f"{p_uf1:.3f}", f"{e_uf1:.3f}"),
        (
            # dropout masks differ between the engines (torch's RNG vs a counter stream), so
            # predictions agree only where dropout does not flip them
            f"argmax agreement with the plain loop (n={n_common})",
            "",
            f"{agreement(plain_folds, plain_probs, ens_probs):.1%}",
        ),
        (f"accuracy / UF1, ensemble folds (n={n_all})", "", f"{e_all_acc:.3f} / {e_all_uf1:.3f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'':<{width}}  {'plain loop':>24}  {'ensemble':>24}")
    for name, plain, ens in rows:
        print(f"{name:<{width}}  {plain:>24}  {ens:>24}")
    print(f"common folds: {[f.test_subject for f in plain_folds]}")
    busy = max(load) > args.threads + 0.5
    print(
        "1-min load average at start / after the ensemble / end: "
        + " / ".join(f"{v:.2f}" for v in load)
        + (" -- other processes shared the CPUs; timings are pessimistic" if busy else "")
    )


if __name__ == "__main__":
    main()
