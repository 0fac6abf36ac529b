"""What a corpus holds and what is wrong with it: the facts behind `mekit data info`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pandas as pd

from mekit.data.labels import LabelScheme
from mekit.data.schema import LoadResult


@dataclass(frozen=True)
class CorpusSummary:
    layout: str
    scheme: str
    n_samples: int  # usable samples with a class in the scheme
    per_class: pd.DataFrame  # label, samples
    per_subject: pd.DataFrame  # subject rows x label columns (+ total)
    emotions: pd.DataFrame  # emotion, samples, label (or "(left out)")
    problems: pd.DataFrame  # id, problem
    notes: tuple[str, ...]  # facts worth knowing that are not errors
    n_videos: int
    n_events: int

    def has_problems(self) -> bool:
        return len(self.problems) > 0


def summarise(layout: str, loaded: LoadResult, scheme: LabelScheme) -> CorpusSummary:
    """Counts per class and subject under `scheme`, and every problem the loader met.

    Problems: rows the loader skipped (with the reason and row) and samples whose emotion the
    scheme does not know. A scheme that deliberately leaves an emotion out (e.g. MEGC 2019
    drops 'others') is a problem only in the sense that those samples will not be used, so it
    is listed, and `--strict` treats it as one.
    """
    rows = []
    problems = [(s.id, s.reason) for s in loaded.skipped]
    emotions: Counter[str] = Counter()
    mapped: dict[str, str] = {}
    for s in loaded.samples:
        emotions[s.emotion] += 1
        label = scheme.label_of(s)
        mapped[s.emotion] = label if label is not None else "(left out)"
        if label is None:
            problems.append((s.id, f"emotion '{s.emotion}' is not in label scheme {scheme.name}"))
            continue
        rows.append((s.subject, label))
    table = pd.DataFrame(rows, columns=["subject", "label"])
    per_class = (
        table.groupby("label").size().rename("samples").reset_index()
        if len(table)
        else pd.DataFrame(columns=["label", "samples"])
    )
    per_subject = (
        pd.crosstab(table["subject"], table["label"], margins=True, margins_name="total")
        if len(table)
        else pd.DataFrame()
    )
    emotion_table = pd.DataFrame(
        [(e, n, mapped[e]) for e, n in sorted(emotions.items())],
        columns=["emotion", "samples", "label"],
    )
    notes = []
    filled = Counter(s.apex_source for s in loaded.samples if s.apex_source != "annotated")
    for source, n in sorted(filled.items()):
        notes.append(f"{n} sample(s) have apex_source={source} (apex not annotated as given)")
    for sample_id, what, old, new, reason in loaded.corrections:
        notes.append(f"correction {sample_id}: {what} {old!r} -> {new!r} ({reason})")
    return CorpusSummary(
        layout=layout,
        scheme=scheme.name,
        n_samples=len(rows),
        per_class=per_class,
        per_subject=per_subject,
        emotions=emotion_table,
        problems=pd.DataFrame(problems, columns=["id", "problem"]),
        notes=tuple(notes),
        n_videos=len(loaded.videos),
        n_events=sum(len(v.events) for v in loaded.videos),
    )


def format_summary(summary: CorpusSummary, root: str) -> str:
    """The plain-text report `mekit data info` prints."""
    out = [
        f"{root}: {summary.layout} layout, {summary.n_samples} samples usable under "
        f"label scheme '{summary.scheme}'"
    ]
    if summary.n_videos:
        out.append(f"long videos: {summary.n_videos} with {summary.n_events} annotated events")
    if len(summary.emotions):
        out += ["", "emotions as annotated:", summary.emotions.to_string(index=False)]
    if len(summary.per_class):
        out += ["", "per class:", summary.per_class.to_string(index=False)]
    if len(summary.per_subject):
        out += ["", "per subject:", summary.per_subject.to_string()]
    for note in summary.notes:
        out.append(f"note: {note}")
    out.append("")
    if summary.has_problems():
        out.append(f"{len(summary.problems)} problem(s):")
        out += [f"  {r.id}: {r.problem}" for r in summary.problems.itertuples()]
    else:
        out.append("no problems found")
    return "\n".join(out)
