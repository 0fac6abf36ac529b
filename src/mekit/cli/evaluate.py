"""`mekit evaluate`: re-score a finished run, or score a model file on corpora
(`mekit.api.evaluate`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mekit.cli.console import print_outcome
from mekit.cli.options import cache, corpus_options, sources
from mekit.errors import MekitError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "evaluate",
        help="re-score a finished run from its predictions, or score a model file on corpora",
    )
    p.add_argument("run_dir", nargs="?", help="a finished run folder to re-score")
    p.add_argument("--model", help="a model file (RUN/model.json) to score on --corpus")
    corpus_options(
        p,
        required=False,
        corpus_help="with --model: corpus folder(s) to score it on (repeat for several)",
        settings=False,
    )
    p.add_argument("--labels", help="label scheme for --corpus (default megc2019)")
    p.add_argument("--out", help="report folder (default runs/evaluate-MODEL-DATE)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.train.runs import compare_table, rescore, run_scores, seed_dirs

    if args.model or args.corpus:
        return _evaluate_model(args)
    if not args.run_dir:
        raise MekitError(
            "give a finished run folder (mekit evaluate RUN) or a model file and corpora "
            "(mekit evaluate --model RUN/model.json --corpus DIR)"
        )
    run = Path(args.run_dir)
    for d in seed_dirs(run) or [run]:
        m = rescore(d)
        print(f"{d}: accuracy {m.accuracy:.4f}  UF1 {m.uf1:.4f}  UAR {m.uar:.4f}  (n={m.n})")
    scores = run_scores(run)
    for name, v in scores.per_dataset.items():
        print(f"  {name:<12} accuracy {v['accuracy']:.4f}  UF1 {v['uf1']:.4f}  UAR {v['uar']:.4f}")
    print()
    print(compare_table([run]))
    return 0


def _evaluate_model(args: argparse.Namespace) -> int:
    from mekit import api

    if not (args.model and args.corpus) or args.run_dir:
        raise MekitError(
            "mekit evaluate --model FILE --corpus DIR scores a model file on corpora; give both, "
            "and no run folder"
        )
    t0 = time.perf_counter()
    evaluation = api.evaluate(
        args.model,
        sources(args),
        out=args.out or None,
        labels=args.labels or "megc2019",
        dataset=args.dataset or "auto",
        workers=args.workers or 2,
        cache=cache(args),
        corrections=args.corrections or None,
        progress=not args.quiet,
    )
    print_outcome(evaluation.details, time.perf_counter() - t0)
    return 0
