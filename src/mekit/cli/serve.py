"""`mekit serve`: the web app; upload or record a video, see its analysis."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    _limit_options(p)
    p.set_defaults(func=run)


def _limit_options(p: argparse.ArgumentParser) -> None:
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


def _analyzer(spotter: str | None):  # type: ignore[no-untyped-def]
    """`analyze_video`, with trained spotters bound in when given (checked now, not per job);
    a partial of a module-level function, so it pickles into the analysis processes."""
    import functools

    from mekit.app.analyze import analyze_video

    if not spotter:
        return analyze_video
    from mekit.spot.learned.run import spotter_files
    from mekit.spot.learned.spotter import load_spotter

    path = Path(spotter).resolve()
    for file in spotter_files([path]):
        load_spotter(file)
    return functools.partial(analyze_video, spotter=path)


def run(args: argparse.Namespace) -> int:
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
    app = create_app(settings, analyze=_analyzer(args.spotter))
    print(
        f"mekit serve: http://{settings.host}:{settings.port}/ (model {model.name}, spotter "
        f"{args.spotter or 'unsupervised'}, history "
        f"{settings.db_path}, uploads up to {settings.max_upload_mb:g} MB, videos up to "
        f"{settings.max_duration_s:g} s, {settings.max_frames} frames and "
        f"{settings.max_frame_side} px, analyses up to {settings.max_job_s:g} s); Ctrl-C stops it"
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0
