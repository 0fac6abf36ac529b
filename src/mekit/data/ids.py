"""One spelling for sample ids that public copies of the corpora write differently.

The same clip is `s1/s1_ne_01` in one SMIC list and `s01/s01_ne_01` in another, SAMM subject 6
is `6` or `006`, and CASME II clips carry an `f` suffix in some releases (`EP02_01f`) and not
in others (`EP02_01`). Every join across sources (the composite list, corrections, several
corpora in one run) compares `canonical_key`s, never the raw strings, so a copy named either
way matches. Ids as loaded are kept as they are for display and outputs.
"""

from __future__ import annotations

import re

# Dataset names that mean the same corpus family (as a generic-format `dataset` cell may say).
_ALIASES = {"casmeii": "casme2", "casme_ii": "casme2", "casme-ii": "casme2"}
_SMIC = ("smic", "smic_vis", "smic_nir", "smic_e", "smic_e_vis", "smic_e_nir")
_SAMM = ("samm", "samm_lv")

_SMIC_SUBJECT = re.compile(r"^s0*(\d+)$", re.IGNORECASE)
_SMIC_CLIP = re.compile(r"^s0*(\d+)_(.+)$", re.IGNORECASE)
_SAMM_CLIP = re.compile(r"^0*(\d+)_(.+)$")
_CASME2_SUBJECT = re.compile(r"^(?:sub)?0*(\d+)$", re.IGNORECASE)
_CASME2_CLIP = re.compile(r"^(ep\d+_\d+)f?$", re.IGNORECASE)


def canonical_dataset(dataset: str) -> str:
    name = dataset.strip().lower()
    return _ALIASES.get(name, name)


def canonical_key(dataset: str, subject: str, clip: str) -> tuple[str, str, str]:
    """(dataset, subject, clip) in one spelling per corpus family:

    - SMIC (any part): subject `s1`, clip `s1_ne_01` (no zero padding, lower case);
    - SAMM (and SAMM Long Videos): subject `006`, clip `006_1_2` (three digits);
    - CASME II: subject `sub01`, clip `EP02_01` (no `f` suffix, upper-case EP);
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
            clip = m.group(1).upper()
    return dataset, subject, clip


def canonical_id(sample_id: str) -> str:
    """`dataset/subject/clip` in the canonical spelling (ids of another shape are returned as
    they are, lower-cased in their dataset part)."""
    parts = sample_id.split("/", 2)
    if len(parts) != 3:
        return sample_id
    return "/".join(canonical_key(*parts))
