"""The `mekit` command. Each subcommand parses its options and calls one library function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from mekit import __version__
from mekit.errors import MekitError, describe_os_error, output_folder

log = logging.getLogger("mekit")


def _default_cache() -> Path:
    return Path(os.environ.get("MEKIT_CACHE", Path.home() / ".cache" / "mekit" / "features"))


def cmd_demo(args: argparse.Namespace) -> int:
    from mekit.pipeline import run_demo

    print(
        f"mekit demo: synthetic corpus of {args.subjects} subjects x {args.clips_per_subject} "
        "clips -> faces -> TV-L1 flow -> STSTNet -> LOSO (3 classes)"
    )
    t0 = time.perf_counter()
    outcome = run_demo(
        Path(args.out),
        args.subjects,
        args.clips_per_subject,
        args.seed,
        args.workers,
        progress=not args.quiet,
    )
    _print_outcome(outcome, time.perf_counter() - t0)
    if outcome.model_path is None:
        return 0
    print(f"demo model (trained on synthetic data only): {outcome.model_path}")
    if args.no_analysis:
        print("analyse a video with it: mekit analyze VIDEO")
        return 0
    from mekit.app.demo import demo_analysis

    print("\nmekit analyze on a synthetic 30 fps video with planted expressions:")
    with _StageBars(enabled=not args.quiet) as bars:
        demo = demo_analysis(
            Path(args.out), outcome.model_path, progress=bars.progress if bars.enabled else None
        )
    a, sc = demo.analysis, demo.scores
    found = ", ".join(f"{e.kind} {e.onset_s:.2f}-{e.offset_s:.2f} s {e.emotion}" for e in a.events)
    print(
        f"  {demo.video.name}: {a.video.duration_s:.0f} s, {len(a.events)} events spotted "
        f"({found or 'none'}); {len(demo.truth)} planted\n"
        f"  spotting against the planted events (IoU >= 0.5): TP {sc.tp} FP {sc.fp} FN {sc.fn}, "
        f"F1 {sc.f1:.3f}; emotions of the matched ones: UF1 {demo.recognition_uf1:.3f}; "
        f"spot-then-recognise {demo.spot_then_recognise:.3f}\n"
        f"  report: {a.path('html')}  (the same for your own video: mekit analyze VIDEO)"
    )
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from mekit.synth import SynthConfig, generate_corpus

    config = SynthConfig(
        subjects=args.subjects,
        clips_per_subject=args.clips_per_subject,
        seed=args.seed,
        fps=args.fps,
        long_videos=not args.no_long_videos,
    )
    summary = generate_corpus(
        Path(args.out), config, progress=not args.quiet, overwrite=args.overwrite
    )
    print(
        f"wrote {summary.n_clips} clips ({summary.n_frames} frames) and "
        f"{len(summary.long_videos)} long videos to {summary.out} in {summary.seconds:.1f} s\n"
        f"coding sheet: {summary.sheet}"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mekit.data.corrections import load_corrections
    from mekit.pipeline import run_experiment

    if args.model == "softnet":
        return _train_spotter(args)
    config = _experiment_config(args)
    out = (
        Path(args.out)
        if args.out
        else Path("runs")
        / time.strftime(f"{args.recipe or config.model}-{config.protocol}-%Y%m%d-%H%M%S")
    )
    output_folder(out)
    t0 = time.perf_counter()
    outcome = run_experiment(
        _sources(args),
        out,
        config,
        cache_dir=_cache(args),
        progress=not args.quiet,
        corrections=load_corrections(args.corrections) if args.corrections else None,
        seeds=_seeds(args.seeds),
        export=None if args.no_export else out / "model",
    )
    _print_outcome(outcome, time.perf_counter() - t0)
    if outcome.model_path is not None:
        print(
            f"model trained on all samples: {outcome.model_path}\n"
            f"analyse a video with it: mekit analyze VIDEO --model {outcome.model_path}"
        )
    return 0


def _train_spotter(args: argparse.Namespace) -> int:
    from mekit.config import from_mapping, parse_overrides
    from mekit.spot.learned import SpotterConfig
    from mekit.spot.learned_run import train_spotters

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
    run = train_spotters(root, output_folder(out), config, progress=not args.quiet)
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


def _sources(args: argparse.Namespace) -> list:  # type: ignore[type-arg]
    from mekit.pipeline import CorpusSource

    if len(args.corpus) > 1 and args.sheet:
        raise MekitError(
            "--sheet applies to one corpus; with several, keep each sheet in its folder"
        )
    return [CorpusSource.parse(c, args.sheet) for c in args.corpus]


def _seeds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise MekitError(f"--seeds '{text}': give comma-separated integers, e.g. 1,2,3") from None


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mekit.config import from_mapping, merge, parse_overrides
    from mekit.pipeline import run_pretrain
    from mekit.train import TrainConfig

    overrides = parse_overrides(args.set or [])
    unknown = set(overrides) - {"train"}
    if unknown:
        raise MekitError(f"pretrain takes only train.* settings, not {', '.join(sorted(unknown))}")
    train = from_mapping(TrainConfig, merge({"epochs": 30}, overrides.get("train", {})))
    outcome = run_pretrain(Path(args.images), Path(args.out), args.model, train)
    print(
        f"pretrained {args.model} on {outcome.n_train} images ({len(outcome.labels)} classes: "
        f"{', '.join(outcome.labels)}); held-out accuracy {outcome.held_out_accuracy:.3f} "
        f"on {outcome.n_held_out} images\nmodel file: {outcome.model_path}\n"
        f"fine-tune with: mekit train --corpus DIR --model {args.model} "
        f"--init {outcome.model_path}"
    )
    return 0


def _spot_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(SpotConfig, SignalConfig) from --config FILE.toml ([spot], [signals]) and --set
    spot.KEY=VALUE / signals.KEY=VALUE (and spot's --p)."""
    from mekit.config import from_mapping, load_toml, merge, parse_overrides
    from mekit.spot.signals import SignalConfig
    from mekit.spot.spotters import SpotConfig

    values = load_toml(Path(args.config)) if getattr(args, "config", None) else {}
    values = merge(values, parse_overrides(getattr(args, "set", None) or []))
    if getattr(args, "p", None) is not None:
        values = merge(values, {"spot": {"p": args.p}})
    unknown = sorted(set(values) - {"spot", "signals"})
    if unknown:
        raise MekitError(
            f"unknown setting section(s) {', '.join(unknown)}: use spot.KEY (the spotter, e.g. "
            "spot.min_z=4) or signals.KEY (signals.k, signals.face_size, signals.method)"
        )
    for section in ("spot", "signals"):
        if not isinstance(values.get(section, {}), dict):
            raise MekitError(f"'{section}' must be a section, e.g. {section}.KEY=VALUE")
    spot = from_mapping(SpotConfig, values.get("spot", {}), "spot.")
    return spot, from_mapping(SignalConfig, values.get("signals", {}), "signals.")


def cmd_spot(args: argparse.Namespace) -> int:
    from mekit.spot.run import spot

    if args.apex:
        return _spot_apexes(args)
    if args.spotter:
        return _spot_learned(args)
    config, signal_config = _spot_settings(args)
    out = Path(args.out) if args.out else Path("spots") / Path(args.source).stem
    outcome = spot(
        Path(args.source),
        output_folder(out),
        config,
        truth_csv=Path(args.truth) if args.truth else None,
        fps=args.fps,
        progress=not args.quiet,
        signal_config=signal_config,
    )
    for v in outcome.videos:
        kinds = [i.kind for i in v.result.intervals]
        print(
            f"{v.video}: {len(kinds)} spotted ({kinds.count('micro')} micro, "
            f"{kinds.count('macro')} macro), {len(v.result.vetoed)} vetoed "
            f"({', '.join(sorted({x.reason for x in v.result.vetoed})) or 'none'})"
        )
        times = dict(zip(v.signals.frame.tolist(), v.signals.time_s.tolist(), strict=True))
        for i in v.result.intervals:
            at = times.get(i.onset, float("nan"))
            print(
                f"  {i.kind:<6} frames {i.onset}-{i.offset} (apex {i.apex}), "
                f"{at:.2f} s  score {i.score:.2f}" + (f"  (during {i.during})" if i.during else "")
            )
    for name, reason in outcome.failed:
        print(f"not spotted: {name}: {reason}")
    if outcome.scores:
        print("\nMEGC spotting (IoU >= 0.5):")
        for kind in ("micro", "macro", "overall"):
            sc = outcome.scores[kind]
            print(
                f"  {kind:<8} TP {sc['tp']:>3} FP {sc['fp']:>3} FN {sc['fn']:>3}  "
                f"P {sc['precision']:.3f}  R {sc['recall']:.3f}  F1 {sc['f1']:.3f}"
            )
    print(f"outputs: {out}/ (NAME.intervals.csv, NAME.png, spots.json, summary.md)")
    return 0


def _spot_learned(args: argparse.Namespace) -> int:
    from mekit.spot.learned_run import spot_with_spotters

    out = Path(args.out) if args.out else Path("spots") / Path(args.source).stem
    source = Path(args.source)
    intervals = spot_with_spotters(source, args.spotter, out, fps=args.fps, progress=not args.quiet)
    print(f"{source.stem}: {len(intervals)} spotted by the SOFTNet spotter")
    for i in intervals:
        print(f"  {i.kind:<6} frames {i.onset}-{i.offset} (apex {i.apex})  score {i.score:.2f}")
    print(f"outputs: {out}/ (NAME.intervals.csv, NAME.intervals.json, NAME.png)")
    return 0


def _spot_apexes(args: argparse.Namespace) -> int:
    import csv

    import numpy as np

    from mekit.data.corpora import load_corpus
    from mekit.spot.apex import spot_apexes

    layout, loaded = load_corpus(Path(args.source), args.corpus_type)
    _, found, failed = spot_apexes(loaded.samples, "spot-all", progress=not args.quiet)
    out = Path(args.out) if args.out else Path("spots") / Path(args.source).stem
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "apex.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "given_apex", "given_source", "spotted_apex", "error_frames"])
        for a in found:
            error = abs(a.spotted - a.given) if a.given_source == "annotated" else ""
            writer.writerow([a.id, a.given, a.given_source, a.spotted, error])
    errors = np.array([abs(a.spotted - a.given) for a in found if a.given_source == "annotated"])
    print(f"{layout}: apex spotted in {len(found)} clips, {len(failed)} failed")
    if len(errors):
        print(
            f"against the {len(errors)} annotated apexes: mean error {errors.mean():.2f} frames, "
            f"median {np.median(errors):.0f}, max {errors.max()}, "
            f"within 3 frames {np.mean(errors <= 3):.0%}"
        )
    for s in failed:
        print(f"  {s.id}: {s.reason}")
    print(f"apex.csv: {out / 'apex.csv'}")
    return 0


class _StageBars:
    """One tqdm bar per stage of a `progress(stage, fraction)` callback."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None

    def progress(self, stage: str, fraction: float) -> None:
        from tqdm.auto import tqdm

        if self._bar is None or self._bar.desc != stage:
            self.close()
            self._bar = tqdm(total=100, desc=stage, unit="%", leave=False)
        self._bar.n = int(round(100 * fraction))
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> _StageBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cmd_analyze(args: argparse.Namespace) -> int:
    import math

    from mekit.app.analyze import AnalyzeConfig, analyze_video

    video = Path(args.video)
    out = Path(args.out) if args.out else Path("analyses") / video.stem
    spot, signals = _spot_settings(args)
    config = AnalyzeConfig(
        spot=spot,
        face_size=signals.face_size,
        flow_method=signals.method,
        k=signals.k,
        video=not args.no_video,
    )
    with _StageBars(enabled=not args.quiet) as bars:
        analysis = analyze_video(
            video,
            out,
            Path(args.model) if args.model else None,
            config,
            progress=bars.progress if bars.enabled else None,
            spotter=Path(args.spotter) if args.spotter else None,
        )
    facts, model = analysis.video, analysis.model
    kinds = [e.kind for e in analysis.events]
    print(
        f"{facts.name}: {facts.duration_s:.1f} s, {facts.n_frames} frames at {facts.fps:g} "
        f"frames/s; {len(kinds)} events ({kinds.count('micro')} micro, "
        f"{kinds.count('macro')} macro) in {analysis.seconds:.1f} s"
    )
    print(f"model: {model.name} ({model.path}), trained on {model.trained_on}")
    if model.demo:
        print("  NOTE: the demo model, trained on synthetic data, not a real-world emotion model")
    if model.oracle:
        print("  WARNING: this model's recorded figures come from test-oracle epoch selection")
    if analysis.events:
        header = f"{'onset s':>8} {'apex s':>7} {'offset s':>9} {'score':>6}  emotion"
        print(f"  {'#':>3} {'kind':<6} {header}")
        for e in analysis.events:
            p = e.confidence
            share = f" ({100 * p:.0f} %)" if math.isfinite(p) else ""
            print(
                f"  {e.index:>3} {e.kind:<6} {e.onset_s:>8.2f} {e.apex_s:>7.2f} "
                f"{e.offset_s:>9.2f} {e.score:>6.2f}  {e.emotion}{share}"
                + (f"  (during {e.during})" if e.during else "")
            )
    for warning in analysis.warnings:
        print(f"warning: {warning}")
    print(f"outputs in {out}/:")
    for name in analysis.files.values():
        if name:
            print(f"  {name}")
    print(f"open {out / 'report.html'} to see the report")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
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
    from mekit.data.corrections import load_corrections
    from mekit.pipeline import evaluate_model

    if not (args.model and args.corpus) or args.run_dir:
        raise MekitError(
            "mekit evaluate --model FILE --corpus DIR scores a model file on corpora; give both, "
            "and no run folder"
        )
    model = Path(args.model)
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / time.strftime(f"evaluate-{model.stem}-%Y%m%d-%H%M%S")
    )
    t0 = time.perf_counter()
    outcome = evaluate_model(
        model,
        _sources(args),
        out,
        labels=args.labels or "megc2019",
        dataset=args.dataset or "auto",
        workers=args.workers or 2,
        cache_dir=_cache(args),
        progress=not args.quiet,
        corrections=load_corrections(args.corrections) if args.corrections else None,
    )
    _print_outcome(outcome, time.perf_counter() - t0)
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from mekit.train.recipes import list_recipes

    recipes = list_recipes()
    width = max(len(r.name) for r in recipes)
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.description}")
    print("train with one: mekit train --corpus DIR --recipe NAME (options and --set override it)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mekit.train.runs import compare_table

    print(compare_table([Path(d) for d in args.run_dirs]))
    return 0


def _experiment_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from mekit.config import load_toml, merge, parse_overrides
    from mekit.pipeline import ExperimentConfig

    values = {}
    if getattr(args, "recipe", None):
        from mekit.train.recipes import load_recipe

        values = load_recipe(args.recipe).settings
    if args.config:
        values = merge(values, load_toml(Path(args.config)))
    keys = ("dataset", "labels", "model", "workers", "protocol", "k", "engine", "executor")
    given = {k: getattr(args, k, None) for k in keys}
    if getattr(args, "ray_address", None):
        given["ray_address"] = args.ray_address
    values = merge(values, {k: v for k, v in given.items() if v is not None})
    if getattr(args, "selection", None):
        values = merge(values, {"train": {"selection": args.selection}})
    if getattr(args, "init", None):
        values = merge(values, {"train": {"init_from": str(args.init)}})
    for key in ("device", "precision"):
        if getattr(args, key, None):
            values = merge(values, {"train": {key: getattr(args, key)}})
    if getattr(args, "allow_missing", False):
        values = merge(values, {"allow_missing": True})
    return ExperimentConfig.from_dict(merge(values, parse_overrides(args.set or [])))


def _cache(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else Path(args.cache or _default_cache())


def cmd_prepare(args: argparse.Namespace) -> int:
    from mekit.motion import FeatureKind
    from mekit.pipeline import prepare_corpus

    try:
        kinds = [FeatureKind(k.strip()) for k in args.features.split(",")]
    except ValueError:
        raise MekitError(
            f"--features '{args.features}': choose from {', '.join(k.value for k in FeatureKind)}"
        ) from None
    config = _experiment_config(args)
    if len(args.corpus) != 1:
        raise MekitError("prepare takes one --corpus at a time")
    n, outcomes = prepare_corpus(
        _sources(args)[0].path,
        kinds,
        config,
        sheet=Path(args.sheet) if args.sheet else None,
        cache_dir=_cache(args),
        progress=not args.quiet,
    )
    print(f"{n} samples in {args.corpus}")
    print(f"{'feature':<12}{'shape':<18}{'done':>6}{'cached':>8}{'failed':>8}{'seconds':>9}")
    for o in outcomes:
        shape = "x".join(map(str, o.shape))
        print(
            f"{o.kind:<12}{shape:<18}{o.done:>6}{o.from_cache:>8}{len(o.skipped):>8}"
            f"{o.seconds:>9.1f}"
        )
    failed = {s.id: s.reason for o in outcomes for s in o.skipped}
    for sample_id, reason in failed.items():
        print(f"  skipped {sample_id}: {reason}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from mekit.data.corpora import load_corpus
    from mekit.data.corrections import load_corrections
    from mekit.data.inspect import format_summary, summarise
    from mekit.data.labels import load_scheme

    if not args.verbose:  # every skipped row is in the report below; no need to log it twice
        logging.getLogger("mekit.data").setLevel(logging.ERROR)
    corrections = load_corrections(args.corrections) if args.corrections else None
    layout, loaded = load_corpus(
        Path(args.corpus_dir), args.corpus, sheet=args.sheet, corrections=corrections
    )
    scheme = load_scheme(args.labels, raw_labels=tuple({s.emotion for s in loaded.samples}))
    summary = summarise(layout, loaded, scheme)
    print(format_summary(summary, args.corpus_dir))
    return 1 if args.strict and summary.has_problems() else 0


def cmd_models(args: argparse.Namespace) -> int:
    from mekit.models import count_params, create_model, list_models
    from mekit.train.inputs import feature_kind_for

    print(f"{'name':<28}{'input':<20}{'shape (C,[T,]H,W)':<20}{'features':<16}{'params':>10}")
    for spec in list_models():
        n = count_params(create_model(spec.name, num_classes=3))
        shape = "x".join(map(str, spec.input_shape))
        kind = feature_kind_for(spec).value
        print(f"{spec.name:<28}{spec.input_kind:<20}{shape:<20}{kind:<16}{n:>10,}")
    print(f"{'lbptop_svm':<28}{'lbptop':<20}{'5x5x1 blocks':<20}{'lbptop':<16}{'(svm)':>10}")
    return 0


def _serve_analyzer(spotter: str | None):  # type: ignore[no-untyped-def]
    """`analyze_video`, with trained spotters bound in when given (checked now, not per job);
    a partial of a module-level function, so it pickles into the analysis processes."""
    import functools

    from mekit.app.analyze import analyze_video

    if not spotter:
        return analyze_video
    from mekit.spot.learned import load_spotter
    from mekit.spot.learned_run import spotter_files

    path = Path(spotter).resolve()
    for file in spotter_files([path]):
        load_spotter(file)
    return functools.partial(analyze_video, spotter=path)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mekit.app.analyze import resolve_model
    from mekit.app.server import ServeSettings, create_app, is_loopback, preflight
    from mekit.app.store import default_data_dir

    # Resolved now (absolute): a missing model is reported here, not by every analysis.
    model = resolve_model(Path(args.model) if args.model else None).resolve()
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
        db=Path(args.db) if args.db else None,
        model=model,
        max_upload_mb=args.max_upload_mb,
        upload_timeout_s=args.upload_timeout_s,
        max_frame_side=args.max_frame_side,
        max_frames=args.max_frames,
        max_duration_s=args.max_duration_s,
        max_job_s=args.max_job_s,
    )
    preflight(settings)  # the model loads, the history can be kept: or no server
    if not is_loopback(settings.host):
        print(
            f"WARNING: mekit serve listens on {settings.host}, not on this machine only: anyone "
            "who can reach it can upload videos and read and delete every analysis (there is no "
            "login). Use the default --host 127.0.0.1 unless this network is trusted.",
            file=sys.stderr,
        )
    app = create_app(settings, analyze=_serve_analyzer(args.spotter))
    print(
        f"mekit serve: http://{settings.host}:{settings.port}/ (model {model.name}, spotter "
        f"{args.spotter or 'unsupervised'}, history "
        f"{settings.db_path}, uploads up to {settings.max_upload_mb:g} MB, videos up to "
        f"{settings.max_duration_s:g} s, {settings.max_frames} frames and "
        f"{settings.max_frame_side} px, analyses up to {settings.max_job_s:g} s); Ctrl-C stops it"
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0


def _print_outcome(outcome, seconds: float) -> None:  # type: ignore[no-untyped-def]
    from mekit.train.runs import seed_spread

    m, runs = outcome.metrics, outcome.per_seed
    print(f"\n{outcome.title}: {outcome.n_samples} samples ({len(outcome.skipped)} skipped)")
    if len(runs) > 1:
        print(f"  mean ± std over {len(runs)} seeds:")
        for key, name in (("accuracy", "accuracy"), ("uf1", "UF1"), ("uar", "UAR")):
            mean, std = seed_spread([getattr(r, key) for r in runs])
            print(f"  {name:<10}{mean:.3f} ± {std:.3f}")
        print(f"  per class, first seed ({outcome.run_dir / 'seed-*'} has each seed's):")
    else:
        for name, value in (("accuracy", m.accuracy), ("UF1", m.uf1), ("UAR", m.uar)):
            print(f"  {name:<10}{value:.3f}")
    print(f"  {'class':<12}{'F1':>7}{'recall':>8}{'n':>5}")
    for label in m.labels:
        c = m.per_class[label]
        print(f"  {label:<12}{c['f1']:>7.3f}{c['recall']:>8.3f}{int(c['support']):>5}")
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in outcome.timings.items())
    print(f"time: {seconds:.0f} s ({timing})")
    print(f"report: {outcome.run_dir / 'summary.md'} (predictions, metrics, confusion matrix)")


def _corpus_options(
    p: argparse.ArgumentParser,
    *,
    required: bool = True,
    corpus_help: str = "corpus folder as distributed (layout detected, or named: "
    "casme2=/data/CASME2); repeat for several corpora (composite, cross-dataset)",
    settings: bool = True,
) -> None:
    """--corpus and what reads it (sheet, layout, corrections, workers, feature cache,
    progress); with `settings`, --config and --set for the run's settings too."""
    p.add_argument(
        "--corpus", required=required, action="append", metavar="[LAYOUT=]PATH", help=corpus_help
    )
    p.add_argument("--sheet", help="annotation sheet (default: found in the corpus folder)")
    p.add_argument(
        "--dataset",
        "--corpus-type",
        dest="dataset",
        help="layout of the corpus (default: detected; see `mekit data info`)",
    )
    p.add_argument("--corrections", help="CSV of annotation corrections (id,field,value,reason)")
    p.add_argument("--workers", type=int, help="processes (default 2)")
    if settings:
        p.add_argument("--config", help="TOML file: top-level keys and [face] [features] [train]")
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a setting, e.g. --set train.epochs=100 --set features.method=farneback",
        )
    p.add_argument(
        "--cache", help="feature cache folder (default ~/.cache/mekit/features or $MEKIT_CACHE)"
    )
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _spot_settings_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with [spot] and [signals] sections")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set spot.min_z=4 --set signals.k=3 (spot.*: the "
        "spotter, see SpotConfig; signals.*: k, face_size, method)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mekit",
        description="Facial micro-expression analysis: spot and recognise micro-expressions "
        "in videos; read the corpora, train and evaluate the models of the literature.",
    )
    parser.add_argument("--version", action="version", version=f"mekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the whole pipeline on a synthetic corpus (no data needed)")
    p.add_argument("--out", default="demo_out", help="folder for corpus, cache and report")
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips-per-subject", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument(
        "--no-analysis",
        action="store_true",
        help="skip `mekit analyze` of a synthetic video with the demo model",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="write a synthetic CASME II-layout corpus with long videos")
    p.add_argument("out", help="output folder (must be empty or absent)")
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips-per-subject", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=200.0)
    p.add_argument("--no-long-videos", action="store_true", help="skip the spotting videos")
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it holds a synthetic corpus"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "train", help="train and evaluate a model (LOSO or another protocol) on corpora"
    )
    _corpus_options(p)
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
    p.add_argument(
        "--init", help="start from a model file (transfer learning, e.g. from `mekit pretrain`)"
    )
    p.add_argument("--out", help="run folder (default runs/MODEL-PROTOCOL-DATE)")
    p.add_argument(
        "--no-export",
        action="store_true",
        help="skip training the model on all samples (RUN/model.json, for `mekit analyze`)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "pretrain", help="pretrain an image model on macro expressions (FER2013, CK+, a folder)"
    )
    p.add_argument("--images", required=True, help="fer2013.csv, a CK+ folder or label/*.png")
    p.add_argument("--model", default="resnet18_dual_attention", help="an apex-image model")
    p.add_argument("--out", required=True, help="model file to write (.safetensors + .json)")
    p.add_argument("--set", action="append", metavar="train.KEY=VALUE", help="training settings")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "spot", help="spot micro- and macro-expressions in a video or a folder of videos"
    )
    p.add_argument("source", help="a video file, a folder of numbered frames, or of videos")
    p.add_argument("--out", help="output folder (default spots/NAME)")
    p.add_argument(
        "--truth", help="intervals.csv to score against (default: one beside the videos)"
    )
    p.add_argument(
        "--fps", type=float, help="frame rate (needed for a folder of frames; overrides a corpus)"
    )
    p.add_argument("--p", type=float, help="threshold factor p of mean + p (max - mean)")
    p.add_argument(
        "--apex",
        action="store_true",
        help="SOURCE is a corpus of annotated clips: spot each clip's apex (apex.csv)",
    )
    p.add_argument("--corpus-type", help="with --apex: the corpus layout (default: detected)")
    _spot_settings_options(p)
    p.add_argument(
        "--spotter",
        action="append",
        metavar="RUN_OR_FILE",
        help="spot with trained SOFTNet spotters (a `mekit train --model softnet` run folder or "
        "a spotter .json) instead of the unsupervised spotter",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_spot)

    p = sub.add_parser(
        "analyze", help="spot and recognise the expressions in a video: report, MP4, JSON, CSV"
    )
    p.add_argument("video", help="a video file (MP4, MOV, AVI, MKV, WebM)")
    p.add_argument(
        "--model",
        help="model file (.json/.safetensors) from `mekit train` (RUN/model.json); default "
        "$MEKIT_MODEL, else the demo model demo_out/model/demo-ststnet-synthetic.json",
    )
    p.add_argument("--out", help="output folder (default analyses/NAME)")
    p.add_argument(
        "--spotter",
        metavar="RUN_OR_FILE",
        help="find the events with trained SOFTNet spotters (`mekit train --model softnet` "
        "run folder) instead of the unsupervised spotter",
    )
    p.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    _spot_settings_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "evaluate",
        help="re-score a finished run from its predictions, or score a model file on corpora",
    )
    p.add_argument("run_dir", nargs="?", help="a finished run folder to re-score")
    p.add_argument("--model", help="a model file (RUN/model.json) to score on --corpus")
    _corpus_options(
        p,
        required=False,
        corpus_help="with --model: corpus folder(s) to score it on (repeat for several)",
        settings=False,
    )
    p.add_argument("--labels", help="label scheme for --corpus (default megc2019)")
    p.add_argument("--out", help="report folder (default runs/evaluate-MODEL-DATE)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="table of several runs side by side")
    p.add_argument("run_dirs", nargs="+")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "prepare", help="compute faces + features for a whole corpus into the cache (resumable)"
    )
    _corpus_options(p)
    p.add_argument(
        "--features",
        default="onset_apex",
        help="comma-separated kinds: onset_apex, keyframes, flow_clip, lbptop",
    )
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("data", help="inspect corpora")
    data = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = data.add_parser(
        "info", help="what a corpus holds: counts per class and subject, and every problem"
    )
    p.add_argument("corpus_dir", help="the corpus folder as distributed")
    p.add_argument(
        "--corpus",
        "--corpus-type",
        dest="corpus",
        help="layout name (default: detected); see the README's corpora table",
    )
    p.add_argument("--labels", default="megc2019", help="label scheme (default megc2019)")
    p.add_argument("--sheet", help="annotation sheet, when not found in the corpus folder")
    p.add_argument("--corrections", help="CSV of annotation corrections (id,field,value,reason)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    p.set_defaults(func=cmd_data_info)

    p = sub.add_parser("models", help="list the models with their input and parameter count")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("recipes", help="list the shipped training recipes (mekit train --recipe)")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("serve", help="the web app: upload or record a video, see its analysis")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--data-dir",
        help="history, uploads and results (default ~/.local/share/mekit or $MEKIT_DATA)",
    )
    p.add_argument("--db", help="history database file (default DATA_DIR/mekit.db)")
    p.add_argument("--model", help="recognition model file (default: as `mekit analyze`)")
    p.add_argument(
        "--spotter",
        metavar="RUN_OR_FILE",
        help="find events with trained SOFTNet spotters (as `mekit analyze --spotter`)",
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=500.0, help="largest upload, in MB (default 500)"
    )
    p.add_argument(
        "--upload-timeout-s",
        type=float,
        default=60.0,
        help="drop an upload that sends nothing for this long (default 60)",
    )
    p.add_argument(
        "--max-frame-side",
        type=int,
        default=3840,
        help="refuse videos with a longer frame side, in pixels (default 3840)",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        default=108_000,
        help="refuse videos with more frames (default 108000)",
    )
    p.add_argument(
        "--max-duration-s",
        type=float,
        default=1800.0,
        help="refuse longer videos, in seconds (default 1800)",
    )
    p.add_argument(
        "--max-job-s",
        type=float,
        default=3600.0,
        help="stop an analysis that runs longer, in seconds (default 3600)",
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # a video's problems are logged where they are found: once, not again as a Python warning
    from mekit.spot.video import VideoWarning

    warnings.simplefilter("ignore", VideoWarning)
    try:
        return int(args.func(args))
    except MekitError as e:
        print(f"mekit: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write the command did not check itself: still one line
        print(f"mekit: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmekit: interrupted; finished samples are cached, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
