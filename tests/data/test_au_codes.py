"""The `aus` strings of SAMM's and CAS(ME)^3's sheets, as their loaders keep them, parse into AUs
(`mekit.train.metrics.parse_au_code`), so AU metrics work on those corpora too."""

from __future__ import annotations

import pytest

from mekit.data.casme3 import load_casme3
from mekit.data.samm import load_samm
from mekit.train.metrics import parse_au_code, parse_aus

from . import test_casme3, test_samm

# SAMM's "Action Units" column: side prefixes (R, L; A for asymmetric), intensity suffixes
# (A-E), AUs outside mekit's set (43 eyes closed, 24, 26), spaces around "+" and parentheses
# around a doubtful AU.
SAMM_CODES = {
    "R12+R14": {12: "R", 14: "R"},
    "4+7+43": {4: "", 7: "", 43: ""},
    "A1+A2": {1: "", 2: ""},
    "12B": {12: ""},
    "R14A": {14: "R"},
    "L2 + 4": {2: "L", 4: ""},
    "12+(R14)": {12: "", 14: "R"},
    "R12+L12": {12: ""},
    "24+26": {24: "", 26: ""},
}
# CAS(ME)^3's "AU" column: "AU" prefixes or bare numbers, sides as CASME II writes them.
CASME3_CODES = {
    "AU4+AU10": {4: "", 10: ""},
    "L1+L2": {1: "L", 2: "L"},
    "4+L10": {4: "", 10: "L"},
    "AU12+AU25": {12: "", 25: ""},
    "R12": {12: "R"},
    "1+2+5": {1: "", 2: "", 5: ""},
}


@pytest.mark.parametrize(("code", "aus"), [*SAMM_CODES.items(), *CASME3_CODES.items()])
def test_sheet_styles_parse(code, aus):
    assert parse_au_code(code) == aus


def test_samm_loader_keeps_codes_that_parse(tmp_path):
    codes = list(SAMM_CODES)[:3]
    rows = [test_samm.row(6, f"006_1_{i}", 10, 12, 14, code) for i, code in enumerate(codes)]
    test_samm.write_samm(
        tmp_path, rows, {("006", f"006_1_{i}"): range(10, 15) for i in range(len(codes))}
    )
    samples = load_samm(tmp_path).samples
    assert [parse_aus(s.aus) for s in samples] == [frozenset(SAMM_CODES[c]) for c in codes]


def test_casme3_loader_keeps_codes_that_parse(tmp_path):
    rows = [test_casme3.row("spNO.1", "a", 10, 15, 20, au="AU4+AU10"),
            test_casme3.row("spNO.1", "a", 30, 33, 40, au="L1+L2")]  # fmt: skip
    test_casme3.write_corpus(tmp_path, rows)
    samples = load_casme3(tmp_path).samples
    assert [parse_aus(s.aus) for s in samples] == [frozenset({4, 10}), frozenset({1, 2})]
