"""The labelled corpus a run reads: every corpus given, its samples under the run's label
scheme (and the composite list for that protocol), joined by sample id."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mekit.data.composite import (
    CompositeSelection,
    composite_shortfall,
    composite_size,
    select_composite,
)
from mekit.data.corpora import NAMES as LAYOUT_NAMES
from mekit.data.corpora import load_corpus
from mekit.data.corrections import Corrections
from mekit.data.ids import canonical_id
from mekit.data.labels import LabelScheme, load_scheme
from mekit.data.schema import Sample, Skipped
from mekit.errors import MekitError
from mekit.pipeline.config import ExperimentConfig
from mekit.spot.apex import spot_apexes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSource:
    """One corpus to read: its folder, layout ("auto" to detect), optional sheet, and optional
    dataset name for sample ids (default: the layout's)."""

    path: Path
    layout: str = "auto"
    sheet: Path | None = None
    name: str | None = None

    @classmethod
    def parse(cls, text: str, sheet: str | Path | None = None) -> CorpusSource:
        """`PATH`, `LAYOUT=PATH` (e.g. `casme2=/data/CASME2`) or `NAME=PATH` for a corpus of a
        detected layout named NAME in sample ids (e.g. two synthetic corpora)."""
        sheet_path = Path(sheet) if sheet else None
        prefix, sep, path = text.partition("=")
        if not sep or Path(text).exists():
            return cls(Path(text), "auto", sheet_path)
        if prefix in LAYOUT_NAMES:
            return cls(Path(path), prefix, sheet_path)
        return cls(Path(path), "auto", sheet_path, name=prefix)


def corpus_sources(
    corpus: Path | CorpusSource | Sequence[CorpusSource], sheet: Path | None
) -> list[CorpusSource]:
    """The corpora of a run as a list, whether given as one path, one source or several."""
    if isinstance(corpus, CorpusSource):
        return [corpus]
    if isinstance(corpus, (str, Path)):
        return [CorpusSource(Path(corpus), "auto", Path(sheet) if sheet else None)]
    return list(corpus)


@dataclass(frozen=True)
class LabelledCorpus:
    """Samples with their class under the run's label scheme, joined by id."""

    samples: tuple[Sample, ...]
    label_of: dict[str, str]
    scheme: LabelScheme
    skipped: tuple[Skipped, ...]
    layouts: tuple[str, ...]
    notes: dict[str, Any]
    composite: CompositeSelection | None = None  # the composite list's selection, if any


def load_labelled(
    sources: Sequence[CorpusSource],
    config: ExperimentConfig,
    corrections: Corrections | None = None,
) -> LabelledCorpus:
    """Read every corpus, apply the label scheme (and the composite list for that protocol)."""
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    layouts = []
    notes: dict[str, Any] = {}
    sources_of: dict[str, int] = {}
    for number, source in enumerate(sources):
        layout = source.layout if source.layout != "auto" else config.dataset
        name, loaded = load_corpus(
            source.path,
            layout,
            sheet=source.sheet,
            corrections=corrections,
            report_unmatched=False,
            dataset=source.name,
        )
        layouts.append(name)
        samples.extend(loaded.samples)
        sources_of.update((s.id, number) for s in loaded.samples if s.id not in sources_of)
        skipped.extend(loaded.skipped)
    if corrections is not None:
        notes["corrections_applied"] = len(corrections.applied)
        skipped.extend(
            Skipped(c.id, f"correction ({corrections.source}) matched no sample: check the id")
            for c in corrections.unmatched()
        )
    if config.apex != "given":
        samples, spotted, failed = spot_apexes(samples, config.apex, config.face, progress=False)
        skipped.extend(failed)  # listed in the report; those samples keep their apex
        notes["apex_spotted"] = len(spotted)
    selection = None
    if config.protocol == "composite":
        selection = select_composite(samples)
        samples = list(selection.samples)
        skipped.extend(selection.skipped)
    scheme = load_scheme(config.labels, raw_labels=tuple({s.emotion for s in samples}))
    labelled, label_of = [], {}
    for s in samples:
        label = scheme.label_of(s)
        if label is None:
            skipped.append(Skipped(s.id, f"emotion '{s.emotion}' is not in scheme {scheme.name}"))
            continue
        labelled.append(s)
        label_of[s.id] = label
    seen: dict[str, Sample] = {}
    for s in labelled:
        key = canonical_id(s.id)
        if key in seen:  # each loader skips its own repeated rows, so: two sources
            where = sorted({sources[sources_of[x.id]].path.name for x in (seen[key], s)})
            raise MekitError(
                f"{seen[key].id} and {s.id} are the same sample, given twice "
                f"(--corpus {' and '.join(where)}); leave one copy out, or name the corpora "
                "apart if they are different data: --corpus a=/path/one --corpus b=/path/two"
            )
        seen[key] = s
    if selection is not None and not config.allow_missing:  # fail before any feature work
        check_composite(selection, set(label_of), skipped, allow_missing=False)
    return LabelledCorpus(
        tuple(labelled), label_of, scheme, tuple(skipped), tuple(layouts), notes, selection
    )


def check_composite(
    selection: CompositeSelection,
    scored: set[str],
    skipped: Sequence[Skipped],
    allow_missing: bool,
) -> str:
    """How much of the composite list the `scored` ids cover, as "N of 442". A shortfall is
    an error listing every missing sample and why, unless `allow_missing` (then a warning)."""
    short = composite_shortfall(selection, scored, skipped)
    total = composite_size()
    coverage = f"{total - len(short)} of {total}"
    if not short:
        return coverage
    per_corpus: dict[str, int] = {}
    for name, _ in short:
        per_corpus[name.split("/")[0]] = per_corpus.get(name.split("/")[0], 0) + 1
    counts = ", ".join(f"{d} {n}" for d, n in sorted(per_corpus.items()))
    head = (
        f"the composite protocol names {total} samples and {len(short)} are missing "
        f"({counts}); only {coverage} could be scored"
    )
    if allow_missing:
        log.warning("%s; scoring those (--allow-missing), every report says %s", head, coverage)
        return coverage
    lines = "\n".join(f"  {name}: {why}" for name, why in short)
    raise MekitError(
        f"{head}:\n{lines}\n{head}. Give every corpus of the composite (--corpus smic=... "
        "--corpus casme2=... --corpus samm=...), or pass --allow-missing to score the "
        f'{total - len(short)} found (reports then say "{coverage}")'
    )
