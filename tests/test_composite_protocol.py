"""The composite protocol never scores a subset silently: missing samples stop the run."""

from __future__ import annotations

import csv
import json

import numpy as np

from mekit.cli.main import main
from mekit.data.composite import composite_members


def write_composite_copy(root, per_subject=3):
    """Flows for some composite members, named as the commonly shared copy names them:
    SMIC `s01`/`s01_ne_01` for the list's `s1`/`s1_ne_01`, CASME II without the `f` suffix."""
    rng = np.random.default_rng(0)
    (root / "flows").mkdir(parents=True)
    members = composite_members()
    chosen: list[tuple[str, str, str, str]] = []
    for dataset in ("smic", "casme2"):
        subjects = sorted({s for d, s, _ in members if d == dataset})[:2]
        for subject in subjects:
            clips = [(d, s, c) for d, s, c in members if d == dataset and s == subject]
            chosen += [(*m, members[m]) for m in clips[:per_subject]]
    rows = []
    for dataset, subject, clip, label in chosen:
        if dataset == "smic":
            number = subject[1:]
            subject, clip = (
                f"s{int(number):02d}",
                clip.replace(f"s{number}_", f"s{int(number):02d}_"),
            )
        elif clip.endswith("f") and not (subject == "sub17" and clip.startswith("EP05_03")):
            clip = clip[:-1]
        name = f"flows/{dataset}_{subject}_{clip}.npy"
        np.save(root / name, rng.normal(0, 1, (3, 28, 28)).astype(np.float32))
        rows.append(
            {"subject": subject, "clip": clip, "label": label, "dataset": dataset, "flow": name}
        )
    with open(root / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root, len(rows)


def train(corpus, out, *extra):
    return main(
        ["train", "--corpus", str(corpus), "--protocol", "composite", "--out", str(out)]
        + ["--quiet", "--no-cache", "--no-export", "--set", "train.epochs=2", *extra]
    )


def test_missing_composite_samples_stop_the_run_with_the_list(tmp_path, capsys):
    corpus, n = write_composite_copy(tmp_path / "copy")
    assert train(corpus, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert f"{442 - n} are missing" in err and f"only {n} of 442" in err
    assert "samm 133" in err  # a corpus not given at all is missing too
    assert "samm/006/006_1_2: not in the corpora given" in err
    assert "--allow-missing" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_allow_missing_scores_what_is_there_and_every_report_says_so(tmp_path, capsys):
    corpus, n = write_composite_copy(tmp_path / "copy")
    assert train(corpus, tmp_path / "run", "--allow-missing") == 0
    predictions = (tmp_path / "run" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == n + 1  # every renamed sample matched the list
    title = json.loads((tmp_path / "run" / "metrics.json").read_text())["title"]
    assert f"{n} of 442" in title
    assert f"{n} of 442" in (tmp_path / "run" / "summary.md").read_text().splitlines()[0]
