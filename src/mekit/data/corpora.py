"""Every corpus layout mekit reads, by name, and detection of the layout of a folder.

One loader module per corpus; this registry only names them, says what each layout looks like
(for error messages and `mekit data info`), and picks the loader when the user names none.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mekit.data.corrections import Corrections
from mekit.data.schema import LoadResult, Skipped
from mekit.errors import MekitError


@dataclass(frozen=True)
class CorpusLayout:
    name: str
    title: str
    module: str  # the loader module under mekit.data
    function: str
    layout: str  # what the folder looks like, for messages and the README
    kwargs: dict[str, Any] = field(default_factory=dict)
    detect: bool = True  # taken part in auto-detection


LAYOUTS: tuple[CorpusLayout, ...] = (
    CorpusLayout(
        "generic",
        "generic folder format",
        "generic",
        "load_generic",
        "samples.csv (subject, clip, label, ... and frames / video / apex_image / flow)",
    ),
    CorpusLayout(
        "synthetic",
        "mekit synthetic corpus",
        "casme2",
        "load_casme2",
        "CASME II layout written by `mekit synth` (synth.json present)",
        {"dataset": "synthetic"},
    ),
    CorpusLayout(
        "casme2",
        "CASME II",
        "casme2",
        "load_casme2",
        "subNN/EPxx_yy/imgN.jpg (or Cropped/.../reg_imgN.jpg) + *coding*.xlsx/.xls",
    ),
    CorpusLayout(
        "samm",
        "SAMM",
        "samm",
        "load_samm",
        "006/006_1_2/006_05562.jpg + SAMM_Micro_FACS_Codes_v2.xlsx (header below 13 note rows)",
    ),
    CorpusLayout(
        "samm_lv",
        "SAMM Long Videos",
        "samm_lv",
        "load_samm_lv",
        "006_1/006_1_00001.jpg long-video folders + SAMM_LongVideos_*.xlsx",
    ),
    CorpusLayout(
        "smic",
        "SMIC-HS",
        "smic",
        "load_smic",
        "HS/s1/micro/negative/s1_ne_01/image*.bmp (labels from folders, no apex)",
        {"subset": "HS"},
    ),
    CorpusLayout(
        "smic_vis",
        "SMIC-VIS",
        "smic",
        "load_smic",
        "VIS/s1/micro/negative/s1_ne_01/*.bmp",
        {"subset": "VIS"},
        detect=False,
    ),
    CorpusLayout(
        "smic_nir",
        "SMIC-NIR",
        "smic",
        "load_smic",
        "NIR/s1/micro/negative/s1_ne_01/*.bmp",
        {"subset": "NIR"},
        detect=False,
    ),
    CorpusLayout(
        "smic_e", "SMIC-E (long videos)", "smic_e", "load_smic_e", "SMIC-E long clips + sheet"
    ),
    CorpusLayout(
        "casme_sq",
        "CAS(ME)^2",
        "casme_sq",
        "load_casme_sq",
        "rawpic/s15/15_0101disgustingteeth/img1.jpg + code_final.xlsx (no header, 3 sheets)",
    ),
    CorpusLayout(
        "casme3",
        "CAS(ME)^3 part A",
        "casme3",
        "load_casme3",
        "spNO.1/b/color/175.jpg + part A label sheet",
    ),
    CorpusLayout(
        "mmew",
        "MMEW",
        "mmew",
        "load_mmew",
        "Micro_Expression/{emotion}/{Filename}/N.jpg + MMEW_Micro_Exp.xlsx",
    ),
    CorpusLayout(
        "ckplus",
        "CK+ (macro expressions)",
        "ckplus",
        "load_ckplus",
        "cohn-kanade-images/S005/001/*.png + Emotion/S005/001/*_emotion.txt",
    ),
)
NAMES = tuple(layout.name for layout in LAYOUTS)


def layout_named(name: str) -> CorpusLayout:
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise MekitError(f"unknown corpus '{name}'; choose one of: {', '.join(NAMES)}")


def _module(layout: CorpusLayout) -> Any:
    return importlib.import_module(f"mekit.data.{layout.module}")


def detect_layout(root: Path | str) -> str:
    """The name of the layout `root` has; MekitError listing the candidates when unsure."""
    root = Path(root)
    if root.is_file() and root.name == "samples.csv":
        return "generic"
    if not root.is_dir():
        raise MekitError(f"corpus folder {root} does not exist; check --corpus")
    if (root / "synth.json").is_file():
        return "synthetic"
    hits = [layout.name for layout in LAYOUTS if layout.detect and _looks_like(layout, root)]
    if "synthetic" in hits:
        hits.remove("synthetic")  # only via synth.json, checked above
    if len(hits) == 1:
        return hits[0]
    if not hits:
        known = "\n".join(f"  {layout.name:9} {layout.layout}" for layout in LAYOUTS)
        raise MekitError(
            f"cannot tell which corpus {root} holds; name it with --corpus-type NAME. "
            f"Known layouts:\n{known}"
        )
    raise MekitError(
        f"{root} looks like several corpora ({', '.join(hits)}); name one with --corpus-type"
    )


def _looks_like(layout: CorpusLayout, root: Path) -> bool:
    try:
        module = _module(layout)
    except ImportError:
        return False
    check = getattr(module, "looks_like", None)
    return bool(check and check(root))


def load_corpus(
    root: Path | str,
    name: str | None = None,
    *,
    sheet: Path | str | None = None,
    corrections: Corrections | None = None,
    report_unmatched: bool = True,
    dataset: str | None = None,
) -> tuple[str, LoadResult]:
    """(layout name, what its loader found) for the corpus at `root`.

    The layout is detected when `name` is None or "auto"; `dataset` renames the corpus in
    sample ids (default: the layout's own name). Corrections applied are returned in
    the result (`LoadResult.corrections`), and corrections that matched no sample are listed as
    skipped entries so they cannot go unnoticed (callers reading several corpora with one
    corrections file pass `report_unmatched=False` and check `corrections.unmatched()` once).
    """
    name = detect_layout(root) if name in (None, "auto") else name
    layout = layout_named(name)
    loader = getattr(_module(layout), layout.function)
    kwargs = dict(layout.kwargs)
    if dataset:
        kwargs["dataset"] = dataset  # the name in sample ids, e.g. two copies of one layout
    result: LoadResult = loader(root, sheet, corrections=corrections, **kwargs)
    if corrections is None:
        return name, result
    unmatched = tuple(
        Skipped(c.id, f"correction ({corrections.source}) matched no sample: check the id")
        for c in (corrections.unmatched() if report_unmatched else ())
    )
    return name, LoadResult(
        samples=result.samples,
        skipped=result.skipped + unmatched,
        videos=result.videos,
        corrections=result.corrections + tuple(corrections.applied),
    )
