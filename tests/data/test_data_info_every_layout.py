"""`mekit data info` on a fixture tree of every layout: detected, counted, problems listed."""

import re

import pytest

from mekit.cli.main import main

from . import (
    test_casme3,
    test_casme_sq,
    test_ckplus,
    test_generic,
    test_mmew,
    test_samm,
    test_samm_lv,
    test_smic,
    test_smic_e,
)
from .fixtures import write_casme2


def build(layout, root):
    """(folder to point at, expected usable samples under `raw` labels)."""
    if layout == "casme2":
        return write_casme2(root), 1
    if layout == "samm":
        rows = [test_samm.row(6, "006_1_2", 10, 12, 14), test_samm.row(6, "006_1_3", 20, 9, 24)]
        test_samm.write_samm(root, rows, {("006", "006_1_2"): range(10, 15)})
        return root, 1
    if layout == "samm_lv":
        rows = [test_samm_lv.row(6, "006_1_1", 10, 14, 20)]
        test_samm_lv.write_samm_lv(root, rows, test_samm_lv.VIDEOS)
        return root, 1
    if layout == "smic":
        test_smic.standard(root)
        return root, None
    if layout == "smic_e":
        return test_smic_e.standard(root), None
    if layout == "casme_sq":
        test_casme_sq.write_corpus(root, [test_casme_sq.micro(1, "disgust1_1", 5, 10, 15)])
        return root, 1
    if layout == "casme3":
        test_casme3.write_corpus(root, [test_casme3.row("spNO.1", "a", 10, 15, 20)])
        return root, 1
    if layout == "mmew":
        test_mmew.write_corpus(root, [test_mmew.row("S01", "S01_1", 2, 8, 15, "happiness")])
        return root, 1
    if layout == "generic":
        return test_generic.write_mixed(root), None
    if layout == "ckplus":
        return test_ckplus.basic(root), 2
    raise AssertionError(layout)


LAYOUTS = ["casme2", "samm", "samm_lv", "smic", "smic_e", "casme_sq", "casme3", "mmew"]


@pytest.mark.parametrize("layout", [*LAYOUTS, "generic", "ckplus"])
def test_data_info_detects_and_counts(layout, tmp_path, capsys):
    folder, expected = build(layout, tmp_path / layout)
    assert main(["data", "info", str(folder), "--labels", "raw"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert f": {layout} layout, " in first, first
    read, usable = (int(n) for n in re.search(r"(\d+) read, (\d+) usable", first).groups())
    assert read >= usable >= 1 and (expected is None or usable == expected)
    assert "per subject:" in out
    assert "problem(s):" in out or "no problems found" in out
