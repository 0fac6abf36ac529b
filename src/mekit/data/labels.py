"""Label schemes as data: CSV files mapping (dataset, emotion) to a class label.

A scheme file has columns `dataset,emotion,label`; lines starting with '#' are comments, and
dataset `*` is the fallback for any corpus without rows of its own. An emotion that already is
one of the scheme's classes (e.g. a composite shared with labels negative/positive/surprise)
passes through as that class, whatever its dataset. Other emotions a scheme does not map are left
out of a run (and listed as skipped), as the published protocols do.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mekit.data.schema import Sample
from mekit.errors import MekitError

BUILTIN_SCHEMES = ("megc2019", "casme2_5class", "raw")


@dataclass(frozen=True)
class LabelScheme:
    name: str
    mapping: dict[tuple[str, str], str]
    labels: tuple[str, ...]

    def label_of(self, sample: Sample) -> str | None:
        """The class of `sample`, or None when the scheme leaves its emotion out."""
        if self.name == "raw":
            return sample.emotion
        emotion = sample.emotion.strip().lower()
        for dataset in (sample.dataset.lower(), "*"):
            if (dataset, emotion) in self.mapping:
                return self.mapping[(dataset, emotion)]
        for label in self.labels:  # already one of the scheme's classes
            if label.lower() == emotion:
                return label
        return None


def load_scheme(name_or_path: str, raw_labels: tuple[str, ...] = ()) -> LabelScheme:
    """A built-in scheme by name (`megc2019`, `casme2_5class`, `raw`) or a CSV file path.

    `raw` keeps each sample's own emotion; its labels are `raw_labels` (the emotions present).
    """
    if name_or_path == "raw":
        return LabelScheme("raw", {}, tuple(sorted(raw_labels)))
    if name_or_path in BUILTIN_SCHEMES:
        text = resources.files("mekit.data").joinpath(f"schemes/{name_or_path}.csv").read_text()
        return _parse(name_or_path, text, source=f"built-in scheme {name_or_path}")
    path = Path(name_or_path)
    if not path.is_file():
        raise MekitError(
            f"label scheme '{name_or_path}' is neither built in ({', '.join(BUILTIN_SCHEMES)}) "
            "nor a CSV file with columns dataset,emotion,label"
        )
    return _parse(path.stem, path.read_text(), source=str(path))


def _parse(name: str, text: str, source: str) -> LabelScheme:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or {"dataset", "emotion", "label"} - set(reader.fieldnames):
        raise MekitError(f"{source}: the header must be dataset,emotion,label")
    mapping: dict[tuple[str, str], str] = {}
    labels: list[str] = []
    for row in reader:
        key = (row["dataset"].strip().lower(), row["emotion"].strip().lower())
        mapping[key] = row["label"].strip()
        if mapping[key] not in labels:
            labels.append(mapping[key])
    return LabelScheme(name, mapping, tuple(sorted(labels)))
