"""One spelling for sample ids that public copies of the corpora write differently.

The same clip is `s1/s1_ne_01` in one SMIC list and `s01/s01_ne_01` in another, SAMM subject 6
is `6` or `006`, and CASME II clips carry an `f` suffix in some copies (`EP02_01f`) and not
in others (`EP02_01`). Every join across sources (the composite list, corrections, several
corpora in one run) compares `canonical_key`s, never the raw strings, so a copy named either
way matches. Ids as loaded are kept as they are for display and outputs.

The CASME II suffix needs care: sub17 has two different clips, `EP05_03` and `EP05_03f`, so
`canonical_key` keeps the suffix, and `loose_key` (which drops it) may only join two lists
where it is unambiguous on both sides (see `match_loosely`).
"""

from __future__ import annotations

import re
from collections import Counter

# Dataset names that mean the same corpus family (as a generic-format `dataset` cell may say).
_ALIASES = {"casmeii": "casme2", "casme_ii": "casme2", "casme-ii": "casme2"}
_SMIC = ("smic", "smic_vis", "smic_nir", "smic_e", "smic_e_vis", "smic_e_nir")
_SAMM = ("samm", "samm_lv")

_SMIC_SUBJECT = re.compile(r"^s0*(\d+)$", re.IGNORECASE)
_SMIC_CLIP = re.compile(r"^s0*(\d+)_(.+)$", re.IGNORECASE)
_SAMM_CLIP = re.compile(r"^0*(\d+)_(.+)$")
_CASME2_SUBJECT = re.compile(r"^(?:sub)?0*(\d+)$", re.IGNORECASE)
_CASME2_CLIP = re.compile(r"^(ep\d+_\d+)(f?)$", re.IGNORECASE)


def canonical_dataset(dataset: str) -> str:
    name = dataset.strip().lower()
    return _ALIASES.get(name, name)


def canonical_key(dataset: str, subject: str, clip: str) -> tuple[str, str, str]:
    """(dataset, subject, clip) in one spelling per corpus family:

    - SMIC (any part): subject `s1`, clip `s1_ne_01` (no zero padding, lower case);
    - SAMM (and SAMM Long Videos): subject `006`, clip `006_1_2` (three digits);
    - CASME II: subject `sub01`, clip `EP02_01f` (upper-case EP, lower-case suffix);
    - any other corpus: as given, dataset lower-cased.
    """
    dataset = canonical_dataset(dataset)
    subject, clip = subject.strip(), clip.strip()
    if dataset in _SMIC:
        if m := _SMIC_SUBJECT.match(subject):
            subject = f"s{int(m.group(1))}"
        if m := _SMIC_CLIP.match(clip):
            clip = f"s{int(m.group(1))}_{m.group(2)}".lower()
    elif dataset in _SAMM:
        if subject.isdigit():
            subject = f"{int(subject):03d}"
        if m := _SAMM_CLIP.match(clip):
            clip = f"{int(m.group(1)):03d}_{m.group(2)}"
    elif dataset == "casme2":
        if m := _CASME2_SUBJECT.match(subject):
            subject = f"sub{int(m.group(1)):02d}"
        if m := _CASME2_CLIP.match(clip):
            clip = m.group(1).upper() + m.group(2).lower()
    return dataset, subject, clip


def loose_key(dataset: str, subject: str, clip: str) -> tuple[str, str, str]:
    """`canonical_key` without CASME II's clip suffix (`EP02_01f` and `EP02_01` alike)."""
    dataset, subject, clip = canonical_key(dataset, subject, clip)
    if dataset == "casme2" and _CASME2_CLIP.match(clip):
        clip = clip.removesuffix("f")
    return dataset, subject, clip


def match_loosely(
    wanted: list[tuple[str, str, str]], given: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    """wanted key -> given key, each `(dataset, subject, clip)` as spelled by its source.

    A pair matches by `canonical_key`; what is left matches by `loose_key` where that key is
    unique among the wanted and among the given keys (so `EP05_03` never takes `EP05_03f`'s
    place when both exist). Each given key is used at most once.
    """
    exact = {canonical_key(*g): g for g in given}
    out: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for w in wanted:
        if (g := exact.get(canonical_key(*w))) is not None:
            out[w] = g
    used = set(out.values())
    left_w = [w for w in wanted if w not in out]
    left_g = [g for g in given if g not in used]
    count_w = Counter(loose_key(*w) for w in wanted)
    count_g = Counter(loose_key(*g) for g in given)
    loose = {loose_key(*g): g for g in left_g if count_g[loose_key(*g)] == 1}
    for w in left_w:
        key = loose_key(*w)
        if count_w[key] == 1 and (g := loose.get(key)) is not None:
            out[w] = g
    return out


def canonical_id(sample_id: str) -> str:
    """`dataset/subject/clip` in the canonical spelling (ids of another shape are returned as
    they are, lower-cased in their dataset part)."""
    parts = sample_id.split("/", 2)
    if len(parts) != 3:
        return sample_id
    return "/".join(canonical_key(*parts))
