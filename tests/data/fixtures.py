"""Fixture trees shared by the loader tests."""

from pathlib import Path

import numpy as np
import pandas as pd

from mekit.data.casme2 import SHEET_HEADER


def write_casme2(root: Path) -> Path:
    """The smallest CASME II tree (one clip of three frames and a coding sheet with the real
    header): the other loaders' `looks_like` must say no to it."""
    folder = root / "sub01" / "EP01_01"
    folder.mkdir(parents=True)
    for n in range(1, 4):
        (folder / f"img{n}.jpg").write_bytes(np.zeros(8, np.uint8).tobytes())
    header = [h or "" for h in SHEET_HEADER]
    rows = [["01", "EP01_01", "", 1, 2, 3, "", "4", "disgust"]]
    pd.DataFrame(rows, columns=header).to_excel(root / "CASME2-coding-x.xlsx", index=False)
    return root
