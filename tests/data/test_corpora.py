import json

import pandas as pd
import pytest

from mekit.cli.main import main
from mekit.data.casme2 import SHEET_HEADER
from mekit.data.corpora import LAYOUTS, detect_layout, layout_named, load_corpus
from mekit.data.corrections import load_corrections
from mekit.errors import MekitError


def casme2_tree(root, rows, frames):
    for (subject, clip), numbers in frames.items():
        folder = root / subject / clip
        folder.mkdir(parents=True)
        for n in numbers:
            (folder / f"img{n}.jpg").write_bytes(b"x")
    df = pd.DataFrame(rows, columns=[h or f"blank{i}" for i, h in enumerate(SHEET_HEADER)])
    df.columns = [h or "" for h in SHEET_HEADER]
    df.to_excel(root / "CASME2-coding-test.xlsx", index=False)
    return root


@pytest.fixture
def casme2(tmp_path):
    return casme2_tree(
        tmp_path / "CASME2",
        [
            ["01", "EP01", "", 1, 3, 5, "", "4", "disgust"],
            ["01", "EP02", "", 1, 3, 5, "", "12", "happiness"],
            ["02", "EP01", "", 1, 2, 5, "", "1+2", "surprise"],
            ["02", "EP02", "", 1, 2, 5, "", "14", "fear"],  # not in megc2019
            ["02", "EP03", "", 4, 2, 5, "", "14", "disgust"],  # apex before onset
            ["03", "EP01", "", 1, 2, 5, "", "14", "disgust"],  # folder missing
        ],
        {
            ("sub01", "EP01"): range(1, 6),
            ("sub01", "EP02"): range(1, 6),
            ("sub02", "EP01"): range(1, 6),
            ("sub02", "EP02"): range(1, 6),
            ("sub02", "EP03"): range(1, 6),
        },
    )


def test_every_layout_names_a_loader_module():
    names = [layout.name for layout in LAYOUTS]
    assert len(names) == len(set(names))
    assert layout_named("casme2").title == "CASME II"
    with pytest.raises(MekitError, match="unknown corpus 'casme9'.*casme2"):
        layout_named("casme9")


def test_detects_casme2_and_synthetic(casme2):
    assert detect_layout(casme2) == "casme2"
    (casme2 / "synth.json").write_text(json.dumps({"config": {}}))
    assert detect_layout(casme2) == "synthetic"
    name, loaded = load_corpus(casme2)
    assert name == "synthetic" and loaded.samples[0].id.startswith("synthetic/")


def test_unknown_folder_lists_the_layouts(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(MekitError, match=r"cannot tell which corpus(.|\n)*casme2(.|\n)*samm"):
        detect_layout(tmp_path)


def test_dataset_rename_and_unmatched_corrections(casme2, tmp_path):
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(
        "id,field,value,reason\n"
        "casme2/sub02/EP03,onset,1,onset typed as 4 in the sheet\n"
        "casme2/sub09/EP01,apex,3,no such sample\n"
    )
    name, loaded = load_corpus(casme2, "casme2", corrections=load_corrections(fixes))
    ids = [s.id for s in loaded.samples]
    assert "casme2/sub02/EP03" in ids  # corrected, so it loads now
    assert loaded.corrections[0][:4] == ("casme2/sub02/EP03", "onset", "4", "1")
    reasons = {s.id: s.reason for s in loaded.skipped}
    assert "matched no sample" in reasons["casme2/sub09/EP01"]
    _, renamed = load_corpus(casme2, "casme2", dataset="lab")
    assert renamed.samples[0].id == "lab/sub01/EP01"


def test_data_info_counts_and_problems(casme2, capsys):
    assert main(["data", "info", str(casme2)]) == 0
    out = capsys.readouterr().out
    assert "casme2 layout, 6 read, 3 usable under label scheme 'megc2019'" in out
    assert "emotion 'fear' is not in label scheme megc2019" in out
    assert "apex 2 is outside onset..offset 4..5" in out and "row 6" in out
    assert "clip folder" in out and "sub03" in out
    assert "3 problem(s)" in out
    assert main(["data", "info", str(casme2), "--strict"]) == 1
    capsys.readouterr()
    assert main(["data", "info", str(casme2), "--labels", "raw"]) == 0
    assert "4 usable" in capsys.readouterr().out
    assert main(["data", "info", str(casme2), "--corpus", "samm"]) == 2
