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
    emotions: pd.DataFrame  # dataset, emotion, samples, label (or "(left out)")
    per_corpus: pd.DataFrame  # dataset, read (rows, skipped ones included), usable
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
    emotions: Counter[tuple[str, str]] = Counter()
    mapped: dict[tuple[str, str], str] = {}
    read: Counter[str] = Counter(_dataset_of(s.id) for s in loaded.skipped)
    usable: Counter[str] = Counter()
    for s in loaded.samples:
        read[s.dataset] += 1
        emotions[(s.dataset, s.emotion)] += 1
        label = scheme.label_of(s)
        mapped[(s.dataset, s.emotion)] = label if label is not None else "(left out)"
        if label is None:
            problems.append((s.id, f"emotion '{s.emotion}' is not in label scheme {scheme.name}"))
            continue
        usable[s.dataset] += 1
        rows.append((s.dataset, s.subject, label))
    table = pd.DataFrame(rows, columns=["dataset", "subject", "label"])
    if table["dataset"].nunique() > 1:  # subjects of different corpora may share a name
        table["subject"] = table["dataset"] + "/" + table["subject"]
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
        [(d, e, n, mapped[(d, e)]) for (d, e), n in sorted(emotions.items())],
        columns=["dataset", "emotion", "samples", "label"],
    )
    per_corpus = pd.DataFrame(
        [(d, read[d], usable[d]) for d in sorted(read)], columns=["dataset", "read", "usable"]
    )
    if len(per_corpus) > 1:
        total = pd.DataFrame([("total", per_corpus["read"].sum(), per_corpus["usable"].sum())])
        per_corpus = pd.concat([per_corpus, total.set_axis(per_corpus.columns, axis=1)])
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
        per_corpus=per_corpus,
        problems=pd.DataFrame(problems, columns=["id", "problem"]),
        notes=tuple(notes),
        n_videos=len(loaded.videos),
        n_events=sum(len(v.events) for v in loaded.videos),
    )


def _dataset_of(sample_id: str) -> str:
    """The corpus part of a sample id (`dataset/subject/clip`)."""
    return sample_id.split("/", 1)[0] if "/" in sample_id else "?"


def format_summary(summary: CorpusSummary, root: str) -> str:
    """The plain-text report `mekit data info` prints."""
    read = int(summary.per_corpus["read"].iloc[-1]) if len(summary.per_corpus) else 0
    out = [
        f"{root}: {summary.layout} layout, {read} read, {summary.n_samples} usable under "
        f"label scheme '{summary.scheme}'"
    ]
    if len(summary.per_corpus):
        out += ["", "per corpus:", summary.per_corpus.to_string(index=False)]
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
