"""`mekit train`: train and cross-validate a model on corpora (`mekit.api.train`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mekit.cli.console import print_outcome
from mekit.cli.options import cache, corpus_options, experiment_config, seeds, sources
from mekit.errors import MekitError, output_folder


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train", help="train and evaluate a model (LOSO or another protocol) on corpora"
    )
    corpus_options(p)
    p.add_argument("--labels", help="label scheme: megc2019, casme2_5class, raw or a CSV path")
    p.add_argument(
        "--recipe",
        help="start from a named recipe (see `mekit recipes`) or a recipe .toml; --config, "
        "options and --set override it",
    )
    p.add_argument(
        "--model",
        help="model name (see `mekit models`; default ststnet); softnet: the learned spotter, "
        "trained and LOSO-scored on the corpus's long videos",
    )
    _protocol_options(p)
    _device_options(p)
    p.add_argument(
        "--init", help="start from a model file (transfer learning, e.g. from `mekit pretrain`)"
    )
    p.add_argument("--out", help="run folder (default runs/MODEL-PROTOCOL-DATE)")
    p.add_argument(
        "--no-export",
        action="store_true",
        help="skip training the model on all samples (RUN/model.json, for `mekit analyze`)",
    )
    p.set_defaults(func=run)


def _protocol_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol",
        choices=["loso", "composite", "cross-dataset", "kfold"],
        help="loso (default); composite: MEGC 2019 over --corpus smic=.. casme2=.. samm=..; "
        "cross-dataset: leave one corpus out; kfold: k folds of whole subjects (--k)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="composite: score the listed samples found instead of stopping with the list of "
        "missing ones (reports then say 'N of 442')",
    )
    p.add_argument("--k", type=int, help="folds of the kfold protocol (default 5)")
    p.add_argument("--seeds", help="comma-separated seeds: one run each, mean and std reported")
    p.add_argument(
        "--selection",
        choices=["fixed", "val-split", "test-oracle"],
        help="model selection: fixed schedule (default), val-split (early stopping on training "
        "subjects), test-oracle (the literature's best-epoch-on-test; NOT a valid estimate)",
    )


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        choices=["auto", "plain", "ensemble"],
        help="plain: one model per fold (default); ensemble: all folds at once (any model, "
        "any device; STSTNet on the CPU through a fused kernel); auto: ensemble where it can",
    )
    p.add_argument(
        "--device",
        help="auto (default: a CUDA GPU, else MPS, else the CPU), cpu, cuda, cuda:N or mps",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto (default: bf16 autocast on a GPU, fp32 on the CPU)",
    )
    p.add_argument("--executor", choices=["local", "ray"], help="where folds run (default local)")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")


def run(args: argparse.Namespace) -> int:
    from mekit import api
    from mekit.models import Task, list_models

    if args.model in {spec.name for spec in list_models(task=Task.SPOTTING)}:
        return _train_spotter(args)
    config = experiment_config(args)
    out = Path(args.out) if args.out else api.run_folder(args.recipe or config.model, config)
    t0 = time.perf_counter()
    trained = api.train(
        sources(args),
        out=out,
        config=config,
        seeds=seeds(args.seeds),
        export=not args.no_export,
        cache=cache(args),
        corrections=args.corrections or None,
        progress=not args.quiet,
    )
    print_outcome(trained.details, time.perf_counter() - t0)
    if trained.model_path is not None:
        print(
            f"model trained on all samples: {trained.model_path}\n"
            f"analyse a video with it: mekit analyze VIDEO --model {trained.model_path}"
        )
    return 0


def _train_spotter(args: argparse.Namespace) -> int:
    from mekit.config import from_mapping, parse_overrides
    from mekit.spot.learned.run import train_spotters
    from mekit.spot.learned.spotter import SpotterConfig
    from mekit.train.executors import make_executor

    if len(args.corpus) != 1:
        raise MekitError("the softnet spotter trains on one long-video corpus (one --corpus)")
    overrides = parse_overrides(args.set or [])
    unknown = set(overrides) - {"spotter"}
    if unknown:
        raise MekitError(
            f"softnet takes only spotter.* settings (e.g. --set spotter.epochs=5), not "
            f"{', '.join(sorted(unknown))}"
        )
    config = from_mapping(SpotterConfig, overrides.get("spotter", {}))
    root = Path(args.corpus[0].split("=", 1)[-1])
    out = Path(args.out) if args.out else Path("runs") / time.strftime("softnet-%Y%m%d-%H%M%S")
    # Folds run one after another unless --workers / --executor say otherwise.
    executor = make_executor(args.executor or "local", args.workers or 1, args.ray_address)
    run = train_spotters(
        root, output_folder(out), config, progress=not args.quiet, executor=executor
    )
    print(
        f"SOFTNet spotter, leave-one-subject-out over {run.n_videos} long videos of "
        f"{len(run.subjects)} subjects (MEGC, IoU >= 0.5):"
    )
    for kind, sc in run.scores.items():
        print(
            f"  {kind:<8} TP {sc['tp']:>3} FP {sc['fp']:>3} FN {sc['fn']:>3}  "
            f"P {sc['precision']:.3f}  R {sc['recall']:.3f}  F1 {sc['f1']:.3f}"
        )
    print(f"time: {run.seconds:.0f} s\nmodels: {', '.join(str(p) for p in run.models.values())}")
    print(f"spot with: mekit spot VIDEO --spotter {out}")
    return 0
