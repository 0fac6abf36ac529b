"""mekit's Python API: analyse a video, spot expressions, read a corpus, train and score models.

    import mekit
    result = mekit.analyze("my_video.mp4")  # spot + recognise; files in analyses/my_video/
    result.events                            # pandas DataFrame, one row per event
    result.plot()                            # the timeline, a matplotlib Figure

Each function is what the `mekit` command of the same name runs, and returns a small result
object whose tables are pandas DataFrames; the library's own result is kept in its `details`.
Frames are 0-based positions in the video (a folder of frames: the files' numbers), times are
seconds from the first frame. Errors a user can fix raise `mekit.errors.MekitError`, whose
message names the file or setting and the fix.

`mekit.spot` and `mekit.train` are subpackages that are also callable: `mekit.spot(video)` runs
`mekit.api.spot` and `mekit.train(corpus)` runs `mekit.api.train`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mekit.errors import MekitError, output_folder

if TYPE_CHECKING:  # the heavy modules load when a function is called, not on `import mekit`
    import pandas as pd
    from matplotlib.figure import Figure

    from mekit.app import result as app_result
    from mekit.app.analyze import AnalyzeConfig
    from mekit.app.recognise import Recogniser
    from mekit.data.corrections import Corrections
    from mekit.data.inspect import CorpusSummary
    from mekit.data.labels import LabelScheme
    from mekit.data.schema import LoadResult
    from mekit.pipeline import CorpusSource, ExperimentConfig, RunOutcome
    from mekit.spot.input.signals import MotionSignals, SignalConfig
    from mekit.spot.run import SpotOutcome
    from mekit.spot.spotters import SpotConfig

# In the order of docs/api.md: the functions, then their results.
__all__ = [
    "analyze",
    "spot",
    "load_corpus",
    "train",
    "evaluate",
    "load_model",
    "signals_frame",
    "default_cache_dir",
    "run_folder",
    "Analysis",
    "Spotting",
    "Corpus",
    "TrainRun",
    "Evaluation",
    "Model",
]

PathLike = str | os.PathLike[str]
Progress = Callable[[str, float], None]
CorpusArg = PathLike | Sequence[PathLike] | Any  # also CorpusSource(s): see `_sources`
Events = Sequence[tuple[int, int, int]]  # (onset, apex, offset) frames


def default_cache_dir() -> Path:
    """The feature cache folder: $MEKIT_CACHE, else ~/.cache/mekit/features."""
    return Path(os.environ.get("MEKIT_CACHE", Path.home() / ".cache" / "mekit" / "features"))


# --- analyze ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """What `analyze` found in one video; every file of it is in `out`.

    details: the library's result (`mekit.app.result.Analysis`, the analysis.json document);
    settings: the `AnalyzeConfig` it ran with.
    """

    details: app_result.Analysis
    settings: AnalyzeConfig

    @property
    def out(self) -> Path:
        """The output folder (analysis.json, timeline.csv/png, report.html, annotated.mp4)."""
        return self.details.out

    @property
    def events(self) -> pd.DataFrame:
        """One row per event, indexed by its number (1-based): kind ("micro"/"macro"); onset,
        apex, offset (frames) and onset_s, apex_s, offset_s (seconds); score (the spotter's,
        0..1); emotion and its probability; aus (FACS code, e.g. "4+7"); during ("speech" or
        ""); prob_LABEL per label of the model."""
        import pandas as pd

        labels = self.details.model.labels
        rows = [
            {
                "event": e.index,
                **{k: getattr(e, k) for k in _EVENT_COLUMNS},
                "probability": e.confidence,
                "aus": e.au_codes,
                "during": e.during,
                **{f"prob_{label}": e.probabilities.get(label, float("nan")) for label in labels},
            }
            for e in self.details.events
        ]
        columns = ["event", *_EVENT_COLUMNS, "probability", "aus", "during"]
        columns += [f"prob_{label}" for label in labels]
        return pd.DataFrame(rows, columns=columns).set_index("event")

    @functools.cached_property
    def signals(self) -> pd.DataFrame:
        """The per-frame motion signals (see `signals_frame`), computed on first use by one
        more pass over the video with the analysis's settings (the analysis keeps none)."""
        from mekit.spot.input.signals import compute_signals

        s = self.settings
        video = self.details.video.path
        found = compute_signals(
            video, k=s.k, face_size=s.face_size, method=s.flow_method, progress=False
        )
        return signals_frame(found)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the user should know: events not recognised, a variable frame rate..."""
        return self.details.warnings

    def plot(self) -> Figure:
        """The timeline (motion over seconds, threshold, events in their emotion's colour):
        timeline.png, the picture of the report, as a matplotlib Figure."""
        return _picture(self.out / "timeline.png")

    def to_json(self) -> dict[str, Any]:
        """The analysis.json document (`mekit.app.result`)."""
        return self.details.to_json()

    def save(self, folder: PathLike) -> Path:
        """Write analysis.json and events.csv (the `events` table) to `folder`; returns it."""
        import json

        folder = output_folder(Path(folder))
        (folder / "analysis.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        self.events.to_csv(folder / "events.csv")
        return folder


_EVENT_COLUMNS = tuple("kind onset apex offset onset_s apex_s offset_s score emotion".split())


def analyze(
    video: PathLike,
    /,
    *,
    model: PathLike | None = None,
    spotter: PathLike | None = None,
    out: PathLike | None = None,
    config: AnalyzeConfig | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> Analysis:
    """Spot the micro- and macro-expressions of `video` and recognise each one's emotion and
    action units, as `mekit analyze` does; the report, CSV, JSON and annotated MP4 go to `out`
    (default analyses/NAME).

    model: a model file (.json/.safetensors, e.g. RUN/model.json); default $MEKIT_MODEL, else
    the demo model. spotter: trained SOFTNet spotters (a `mekit train --model softnet` run)
    instead of the unsupervised spotter. settings: fields of `mekit.app.analyze.AnalyzeConfig`
    over `config`, e.g. `video=False` (no MP4; `video` the file is positional), `k=3` (flow
    offset, frames), `spot={"p": 0.6}`.
    progress: called as `progress(stage, fraction 0..1)`.
    """
    from mekit.app.analyze import AnalyzeConfig, analyze_video

    video = Path(video)
    config = _configured(AnalyzeConfig, config, settings)
    result = analyze_video(
        video,
        Path(out) if out is not None else Path("analyses") / video.stem,
        Path(model) if model is not None else None,
        config,
        progress=progress,
        spotter=Path(spotter) if spotter is not None else None,
    )
    return Analysis(result, config)


# --- spot -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spotting:
    """What `spot` found in each video of its source; files in `out` (see `mekit.spot.run`).

    details: the library's result (`mekit.spot.run.SpotOutcome`).
    """

    details: SpotOutcome

    @property
    def out(self) -> Path:
        """The output folder (NAME.intervals.csv, NAME.png, spots.json, summary.md)."""
        return self.details.out

    @property
    def events(self) -> pd.DataFrame:
        """One row per spotted interval: video, onset, apex, offset (frames), onset_s, apex_s,
        offset_s (seconds), kind ("micro"/"macro"), score (the spotter's confidence, 0..1),
        during ("speech" or "")."""
        import pandas as pd

        from mekit.spot.run import COLUMNS

        rows = []
        for v in self.details.videos:
            seconds = dict(zip(v.signals.frame.tolist(), v.signals.time_s.tolist(), strict=True))
            for i in v.result.intervals:
                at = [seconds.get(f, float("nan")) for f in (i.onset, i.apex, i.offset)]
                rows.append([v.video, i.onset, i.apex, i.offset, *at, i.kind, i.score, i.during])
        return pd.DataFrame(rows, columns=list(COLUMNS))

    @property
    def signals(self) -> pd.DataFrame:
        """The per-frame motion signals of every video (`signals_frame`, plus a video column)."""
        import pandas as pd

        frames = [signals_frame(v.signals).assign(video=v.video) for v in self.details.videos]
        return pd.concat(frames, ignore_index=True)

    @property
    def scores(self) -> dict[str, dict[str, float]] | None:
        """MEGC spotting scores (micro, macro, overall: tp, fp, fn, precision, recall, f1) when
        the truth is known, else None."""
        return self.details.scores

    @property
    def failed(self) -> tuple[tuple[str, str], ...]:
        """(video, reason) of the videos that could not be read."""
        return self.details.failed

    def plot(self, video: str | None = None) -> Figure:
        """The motion curve of `video` (default: the first) with its threshold and spotted
        intervals: the NAME.png `spot` wrote, as a matplotlib Figure."""
        names = [v.video for v in self.details.videos]
        name = names[0] if video is None else video
        if name not in names:
            raise MekitError(f"no video '{video}' was spotted; choose from {', '.join(names)}")
        return _picture(self.out / f"{name}.png")


def spot(
    source: PathLike,
    *,
    out: PathLike | None = None,
    truth: PathLike | None = None,
    fps: float | None = None,
    config: SpotConfig | None = None,
    signals: SignalConfig | Mapping[str, Any] | None = None,
    progress: bool = False,
    **settings: Any,
) -> Spotting:
    """Spot micro- and macro-expressions with the unsupervised spotter, as `mekit spot` does:
    `source` is a video, a folder of numbered frames, a folder of videos or a long-video corpus;
    files go to `out` (default spots/NAME), scored against `truth` (an intervals.csv; default
    one beside the videos) when there is one.

    fps: frame rate (frames/s; needed for a folder of frames). settings: fields of
    `mekit.spot.spotters.SpotConfig` over `config`, e.g. `p=0.6`. signals: the motion signals'
    settings (`SignalConfig` or a mapping of k (frames), face_size (px), method).
    """
    from mekit.config import from_mapping
    from mekit.spot.input.signals import SignalConfig
    from mekit.spot.run import spot as spot_source
    from mekit.spot.spotters import SpotConfig

    source = Path(source)
    config = _configured(SpotConfig, config, settings)
    if not isinstance(signals, SignalConfig):
        signals = from_mapping(SignalConfig, signals or {}, "signals.")
    out = Path(out) if out is not None else Path("spots") / source.stem
    outcome = spot_source(
        source,
        output_folder(out),
        config,
        truth_csv=Path(truth) if truth is not None else None,
        fps=fps,
        progress=progress,
        signal_config=signals,
    )
    return Spotting(outcome)


def signals_frame(signals: MotionSignals) -> pd.DataFrame:
    """`MotionSignals` as a DataFrame, one row per frame: frame, time_s (seconds), one column
    per face region (flow magnitude, crop px), strain, eye_motion, head (crop px), ear, face_ok,
    and mouth / audio_db where recorded (see `mekit.spot.input.signals.MotionSignals`)."""
    import pandas as pd

    columns: dict[str, Any] = {"frame": signals.frame, "time_s": signals.time_s}
    columns.update(signals.regions)
    for name in ("strain", "eye_motion", "head", "ear", "face_ok", "mouth", "audio_db"):
        value = getattr(signals, name)
        if value is not None:
            columns[name] = value
    return pd.DataFrame(columns)


# --- corpora ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """A corpus as its loader read it, under a label scheme.

    details: what the loader found (`mekit.data.schema.LoadResult`); summary: counts per class
    and subject and every problem (`mekit.data.inspect.CorpusSummary`, `mekit data info`);
    scheme: the label scheme (`mekit.data.labels.LabelScheme`).
    """

    layout: str
    details: LoadResult
    summary: CorpusSummary
    scheme: LabelScheme

    @property
    def samples(self) -> pd.DataFrame:
        """One row per sample the loader read, indexed by sample id: dataset, subject, clip,
        onset, apex, offset (the corpus's frame numbers), emotion (as annotated), label (its
        class under the scheme; missing where the scheme leaves it out), aus, fps (frames/s), kind,
        apex_source, n_frames (frames on disk)."""
        import pandas as pd

        keys = ("dataset", "subject", "clip", "onset", "apex", "offset", "emotion")
        rows = [
            {
                "id": s.id,
                **{k: getattr(s, k) for k in keys},
                "label": self.scheme.label_of(s),
                "aus": s.aus,
                "fps": s.fps,
                "kind": s.kind,
                "apex_source": s.apex_source,
                "n_frames": len(s.frames),
            }
            for s in self.details.samples
        ]
        columns = ["id", *keys, "label", "aus", "fps", "kind", "apex_source", "n_frames"]
        return pd.DataFrame(rows, columns=columns).set_index("id")

    @property
    def problems(self) -> pd.DataFrame:
        """id, problem: rows the loader skipped (with why) and emotions the scheme lacks."""
        return self.summary.problems


def load_corpus(
    path: PathLike,
    corpus: str | None = None,
    labels: str = "megc2019",
    *,
    sheet: PathLike | None = None,
    corrections: PathLike | Corrections | None = None,
) -> Corpus:
    """Read the corpus folder `path` as distributed, as `mekit data info` does.

    corpus: the layout name (default: detected; see the README's corpora table). labels: the
    label scheme (megc2019, casme2_5class, raw or a CSV path). sheet: the annotation sheet when
    it is not in the folder. corrections: a CSV of annotation corrections (id,field,value,reason).
    """
    from mekit.data.corpora import load_corpus as load_layout
    from mekit.data.inspect import summarise
    from mekit.data.labels import load_scheme

    fixes = _corrections(corrections)
    layout, loaded = load_layout(Path(path), corpus, sheet=sheet, corrections=fixes)
    scheme = load_scheme(labels, raw_labels=tuple({s.emotion for s in loaded.samples}))
    return Corpus(layout, loaded, summarise(layout, loaded, scheme), scheme)


# --- training and evaluation ------------------------------------------------------------------


@dataclass(frozen=True)
class TrainRun:
    """A finished run: its report is in `run_dir` (summary.md, metrics.json, predictions.csv).

    details: the library's result (`mekit.pipeline.RunOutcome`).
    """

    details: RunOutcome

    @property
    def run_dir(self) -> Path:
        """The run's folder (summary.md, metrics.json, predictions.csv, confusion.png)."""
        return self.details.run_dir

    @property
    def metrics(self) -> dict[str, Any]:
        """accuracy, uf1, uar (0..1), per_class {label: f1, recall, support...}, confusion, n."""
        return self.details.metrics.to_dict()

    @property
    def predictions(self) -> pd.DataFrame:
        """predictions.csv, indexed by sample id (true and predicted label, fold, ...)."""
        import pandas as pd

        return pd.read_csv(self.run_dir / "predictions.csv").set_index("id")

    @property
    def model_path(self) -> Path | None:
        """The model trained on all samples (its .json sidecar), for `analyze(model=...)`."""
        return self.details.model_path

    def plot(self) -> Figure:
        """The confusion matrix the run wrote (confusion.png), as a matplotlib Figure."""
        return _picture(self.run_dir / "confusion.png")


class Evaluation(TrainRun):
    """A model file scored on corpora, with no training (`evaluate`); as `TrainRun`."""


def run_folder(name: str, config: ExperimentConfig) -> Path:
    """The default run folder of `train`: runs/NAME-PROTOCOL-YYYYMMDD-HHMMSS."""
    return Path("runs") / time.strftime(f"{name}-{config.protocol}-%Y%m%d-%H%M%S")


def train(
    corpus: CorpusArg,
    *,
    model: str | None = None,
    recipe: str | None = None,
    out: PathLike | None = None,
    config: ExperimentConfig | None = None,
    seeds: Sequence[int] | None = None,
    export: bool = True,
    cache: bool | PathLike = True,
    corrections: PathLike | Corrections | None = None,
    progress: bool = False,
    **settings: Any,
) -> TrainRun:
    """Train and cross-validate a model on `corpus`, as `mekit train` does; the report goes to
    `out` (default runs/MODEL-PROTOCOL-DATE) and, with `export`, the model trained on all
    samples to out/model.json.

    corpus: a folder, "LAYOUT=PATH", or a list of them. model: a registered model (default
    ststnet, see `mekit models`). recipe: a named recipe or a .toml (`mekit recipes`).
    settings: `mekit.pipeline.ExperimentConfig` fields over the recipe, e.g. `protocol="kfold"`,
    `train={"epochs": 30}`; or give a whole `config` instead. seeds: one run per seed (mean and
    std reported). cache: the feature cache (True: `default_cache_dir()`, False: none).
    """
    from mekit.pipeline import run_blend, run_experiment

    config = _experiment_config(config, model, recipe, settings)
    run = run_blend if config.blend.active else run_experiment
    out = output_folder(
        Path(out) if out is not None else run_folder(recipe or config.model, config)
    )
    outcome = run(
        _sources(corpus),
        out,
        config,
        cache_dir=_cache_dir(cache),
        progress=progress,
        corrections=_corrections(corrections),
        seeds=seeds,
        export=out / "model" if export else None,
    )
    return TrainRun(outcome)


def evaluate(
    model: PathLike,
    corpus: CorpusArg,
    *,
    out: PathLike | None = None,
    labels: str = "megc2019",
    dataset: str = "auto",
    workers: int = 2,
    cache: bool | PathLike = True,
    corrections: PathLike | Corrections | None = None,
    progress: bool = False,
) -> Evaluation:
    """Score the model file `model` on every sample of `corpus` with no training, as `mekit
    evaluate --model` does; the report goes to `out` (default runs/evaluate-MODEL-DATE).

    labels: the label scheme of the corpus; dataset: its layout (default detected); workers:
    processes; cache and corrections: as `train`.
    """
    from mekit.pipeline import evaluate_model

    model = Path(model)
    if out is None:
        out = Path("runs") / time.strftime(f"evaluate-{model.stem}-%Y%m%d-%H%M%S")
    outcome = evaluate_model(
        model,
        _sources(corpus),
        Path(out),
        labels=labels,
        dataset=dataset,
        workers=workers,
        cache_dir=_cache_dir(cache),
        progress=progress,
        corrections=_corrections(corrections),
    )
    return Evaluation(outcome)


# --- models -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A trained recognition model with the settings of its input (`load_model`).

    details: the library's model (`mekit.app.recognise.Recogniser`).
    """

    details: Recogniser

    @property
    def info(self) -> app_result.ModelInfo:
        """Its file, registered name, labels, provenance and recorded metrics."""
        return self.details.info

    @property
    def labels(self) -> tuple[str, ...]:
        """The classes it outputs, in the order of its probabilities."""
        return self.details.info.labels

    def predict(self, video: PathLike, events: pd.DataFrame | Events) -> pd.DataFrame:
        """The emotion of each event of `video`: `events` are (onset, apex, offset) frames, as
        rows of a DataFrame with those columns (e.g. `spot(video).events`) or as tuples.

        One row per event, in order: onset, apex, offset, emotion, probability, aus (FACS
        code), prob_LABEL per label, and error (why an event could not be recognised, else "").
        """
        import pandas as pd

        from mekit.app.analyze import probe
        from mekit.app.recognise import recognise_events
        from mekit.spot.metrics import Interval

        video = Path(video)
        if isinstance(events, pd.DataFrame):
            events = list(events[["onset", "apex", "offset"]].itertuples(index=False, name=None))
        intervals = [Interval(int(on), int(off), apex=int(apex)) for on, apex, off in events]
        found = recognise_events(video, intervals, self.details, probe(video).fps)
        return pd.DataFrame(
            [_prediction(i, f, self.labels) for i, f in zip(intervals, found, strict=True)],
            columns=["onset", "apex", "offset", "emotion", "probability", "aus"]
            + [f"prob_{label}" for label in self.labels]
            + ["error"],
        )


def load_model(path: PathLike | None = None) -> Model:
    """The model file at `path` (stem, .json or .safetensors, e.g. RUN/model.json); without
    one, the model `analyze` uses by default ($MEKIT_MODEL, else the demo model)."""
    from mekit.app.analyze import resolve_model
    from mekit.app.recognise import load_recogniser

    return Model(load_recogniser(resolve_model(Path(path) if path is not None else None)))


# --- helpers ----------------------------------------------------------------------------------


def _configured(cls: type, base: Any, settings: Mapping[str, Any]) -> Any:
    """`base` (default: `cls()`) with `settings` (checked by name and type, nested sections as
    mappings) replacing its fields."""
    from mekit.config import from_mapping

    parsed = from_mapping(cls, settings)
    if base is None:
        return parsed
    return dataclasses.replace(base, **{k: getattr(parsed, k) for k in settings})


def _experiment_config(
    config: ExperimentConfig | None,
    model: str | None,
    recipe: str | None,
    settings: Mapping[str, Any],
) -> ExperimentConfig:
    """`config`, or the recipe's settings with `model` and `settings` over them."""
    from mekit.config import merge
    from mekit.pipeline import ExperimentConfig

    if config is not None:
        if model or recipe or settings:
            raise MekitError("give train() a whole `config`, or model/recipe/settings; not both")
        return config
    values: dict[str, Any] = {}
    if recipe:
        from mekit.train.recipes import load_recipe

        values = load_recipe(recipe).settings
    if model:
        values = merge(values, {"model": model})
    return ExperimentConfig.from_dict(merge(values, dict(settings)))


def _sources(corpus: CorpusArg) -> list[CorpusSource]:
    from mekit.pipeline import CorpusSource

    items = [corpus] if isinstance(corpus, str | os.PathLike | CorpusSource) else list(corpus)
    return [c if isinstance(c, CorpusSource) else CorpusSource.parse(str(c)) for c in items]


def _cache_dir(cache: bool | PathLike) -> Path | None:
    if cache is True:
        return default_cache_dir()
    return Path(cache) if cache else None


def _corrections(corrections: PathLike | Corrections | None) -> Corrections | None:
    from mekit.data.corrections import load_corrections

    if isinstance(corrections, str | os.PathLike):
        return load_corrections(corrections)
    return corrections


def _prediction(interval: Any, found: Any, labels: Sequence[str]) -> list[Any]:
    """One row of `Model.predict`: a `Recognition`, or the reason (str) it failed."""
    timing = [interval.onset, interval.apex, interval.offset]
    if isinstance(found, str):
        return [*timing, "unknown", float("nan"), "", *[float("nan")] * len(labels), found]
    probs = found.probabilities
    aus = "+".join(str(a.au) for a in found.aus)
    row = [*timing, found.emotion, probs.get(found.emotion, max(probs.values())), aus]
    return [*row, *[probs.get(label, float("nan")) for label in labels], ""]


def _picture(path: Path) -> Figure:
    """The PNG at `path` in a matplotlib Figure (no axes), sized to show it at 100 dpi."""
    import matplotlib.image
    from matplotlib.figure import Figure

    if not path.is_file():
        raise MekitError(f"{path} is missing: the result's folder was moved or cleaned")
    image = matplotlib.image.imread(path)
    fig = Figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image)
    ax.set_axis_off()
    return fig
