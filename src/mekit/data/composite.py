"""The MEGC 2019 composite: which samples of SMIC, CASME II and SAMM it contains.

The list ships as data (`protocols/megc2019_composite.csv`, with its source in the file's
comment lines and the clips where implementations disagree in `megc2019_composite.md`). Only
corpora named in the list are filtered; any other corpus (e.g. our synthetic one) passes as is.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

from mekit.data.ids import canonical_dataset, canonical_id, match_loosely
from mekit.data.schema import Sample, Skipped

LIST_FILE = "protocols/megc2019_composite.csv"


@dataclass(frozen=True)
class CompositeSelection:
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...]  # samples of a listed corpus that the list leaves out
    missing: tuple[str, ...]  # listed samples (as the list spells them) not among the loaded
    labels: dict[str, str]  # sample id -> the list's class label
    found: dict[str, str]  # listed sample (as the list spells it) -> the loaded sample's id


def composite_members() -> dict[tuple[str, str, str], str]:
    """(dataset, subject, clip) -> label for every sample of the composite list."""
    text = resources.files("mekit.data").joinpath(LIST_FILE).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return {
        (r["dataset"].strip(), r["subject"].strip(), r["clip"].strip()): r["label"].strip()
        for r in csv.DictReader(lines)
    }


def composite_size() -> int:
    """How many samples the composite list names (442)."""
    return len(composite_members())


def select_composite(samples: tuple[Sample, ...] | list[Sample]) -> CompositeSelection:
    """Keep the listed samples of the listed corpora (and every sample of other corpora).

    Samples are matched by `mekit.data.ids.match_loosely`, so copies that spell SMIC, SAMM or
    CASME II ids differently from the list (`s01` for `s1`, `6` for `006`, `EP02_01` for
    `EP02_01f`) match.
    `missing` names every listed sample that no loaded sample matched, in every listed corpus
    (a composite run that lacks a whole corpus lacks its samples too).
    """
    members = composite_members()
    listed = {canonical_dataset(d) for d, _, _ in members}
    mine = [s for s in samples if canonical_dataset(s.dataset) in listed]
    of_key = {(s.dataset, s.subject, s.clip): s for s in mine}
    matched = match_loosely(list(members), list(of_key))
    chosen = {of_key[g].id: m for m, g in matched.items()}
    kept, skipped, labels, found = [], [], {}, {}
    for s in samples:
        if canonical_dataset(s.dataset) not in listed:
            kept.append(s)
        elif s.id in chosen:
            member = chosen[s.id]
            kept.append(s)
            found["/".join(member)] = s.id
            labels[s.id] = members[member]
        else:
            skipped.append(Skipped(s.id, "not in the MEGC 2019 composite list"))
    missing = tuple("/".join(k) for k in members if "/".join(k) not in found)
    return CompositeSelection(tuple(kept), tuple(skipped), missing, labels, found)


def composite_shortfall(
    selection: CompositeSelection, scored: set[str], skipped: list[Skipped] | tuple[Skipped, ...]
) -> list[tuple[str, str]]:
    """(listed sample, why it is not scored) for each composite sample outside `scored` ids.

    The reason is the skip reason of the sample (or of a loader row with the same canonical
    id, e.g. an unreadable file), else "not in the corpora given".
    """
    why: dict[str, str] = {}
    for s in skipped:
        why.setdefault(s.id, s.reason)
        why.setdefault(canonical_id(s.id), s.reason)
    out = []
    for member in composite_members():
        name = "/".join(member)
        sample_id = selection.found.get(name)
        if sample_id is None:
            reason = why.get(canonical_id(name), "not in the corpora given")
            out.append((name, reason))
        elif sample_id not in scored:
            out.append((name, why.get(sample_id, "left out of the run")))
    return out
