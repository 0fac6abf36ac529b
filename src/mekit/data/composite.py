"""The MEGC 2019 composite: which samples of SMIC, CASME II and SAMM it contains.

The list ships as data (`protocols/megc2019_composite.csv`, with its source in the file's
comment lines and the clips where implementations disagree in `megc2019_composite.md`). Only
corpora named in the list are filtered; any other corpus (e.g. our synthetic one) passes as is.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

from mekit.data.schema import Sample, Skipped

LIST_FILE = "protocols/megc2019_composite.csv"


@dataclass(frozen=True)
class CompositeSelection:
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...]  # samples of a listed corpus that the list leaves out
    missing: tuple[str, ...]  # listed samples not found among the loaded ones
    labels: dict[str, str]  # sample id -> the list's class label


def composite_members() -> dict[tuple[str, str, str], str]:
    """(dataset, subject, clip) -> label for every sample of the composite list."""
    text = resources.files("mekit.data").joinpath(LIST_FILE).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return {
        (r["dataset"].strip(), r["subject"].strip(), r["clip"].strip()): r["label"].strip()
        for r in csv.DictReader(lines)
    }


def select_composite(samples: tuple[Sample, ...] | list[Sample]) -> CompositeSelection:
    """Keep the listed samples of the listed corpora (and every sample of other corpora)."""
    members = composite_members()
    listed = {d for d, _, _ in members}
    kept, skipped, found, labels = [], [], set(), {}
    for s in samples:
        key = (s.dataset, s.subject, s.clip)
        if s.dataset not in listed:
            kept.append(s)
        elif key in members:
            kept.append(s)
            found.add(key)
            labels[s.id] = members[key]
        else:
            skipped.append(Skipped(s.id, "not in the MEGC 2019 composite list"))
    present = {s.dataset for s in samples} & listed
    missing = tuple(f"{d}/{subj}/{clip}" for d, subj, clip in sorted(members) if d in present)
    missing = tuple(m for m in missing if tuple(m.split("/", 2)) not in found)
    return CompositeSelection(tuple(kept), tuple(skipped), missing, labels)
