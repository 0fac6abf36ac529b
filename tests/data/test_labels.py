from dataclasses import replace
from pathlib import Path

import pytest

from mekit.data.labels import load_scheme
from mekit.data.schema import Sample
from mekit.errors import MekitError

BASE = Sample("x/s/c", "casme2", "sub01", "c", 1, 2, 3, "disgust", "4", 200.0, (Path("a"),), (1,))


def test_megc2019_maps_casme2_and_samm():
    scheme = load_scheme("megc2019")
    assert scheme.labels == ("negative", "positive", "surprise")
    assert scheme.label_of(BASE) == "negative"
    assert scheme.label_of(replace(BASE, emotion="Happiness")) == "positive"
    assert scheme.label_of(replace(BASE, emotion="others")) is None
    assert scheme.label_of(replace(BASE, emotion="contempt")) is None  # not a CASME II emotion
    assert scheme.label_of(replace(BASE, dataset="samm", emotion="contempt")) == "negative"


def test_raw_and_user_csv(tmp_path):
    assert load_scheme("raw", ("b", "a")).labels == ("a", "b")
    assert load_scheme("raw").label_of(BASE) == "disgust"
    path = tmp_path / "mine.csv"
    path.write_text("# two classes\ndataset,emotion,label\n*,disgust,bad\n*,happiness,good\n")
    scheme = load_scheme(str(path))
    assert scheme.labels == ("bad", "good") and scheme.label_of(BASE) == "bad"


def test_unknown_scheme_names_the_options(tmp_path):
    with pytest.raises(MekitError, match="megc2019"):
        load_scheme("nope")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(MekitError, match="dataset,emotion,label"):
        load_scheme(str(bad))


@pytest.mark.parametrize("dataset", ["casme2", "samm", "smic", "generic", "mycorpus"])
@pytest.mark.parametrize("emotion", ["negative", "Positive", "SURPRISE"])
def test_a_label_that_is_already_a_class_passes_through_for_any_dataset(dataset, emotion):
    # The MEGC 2019 composite as commonly shared labels CASME II and SAMM clips with the
    # composite's own classes; these were dropped ("not in scheme megc2019") before.
    sample = replace(BASE, dataset=dataset, emotion=emotion)
    assert load_scheme("megc2019").label_of(sample) == emotion.lower()


def test_pass_through_keeps_the_schemes_own_mapping_first(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("dataset,emotion,label\n*,good,bad\n*,happiness,good\n")
    scheme = load_scheme(str(path))
    assert scheme.label_of(replace(BASE, emotion="good")) == "bad"  # the mapping wins
    assert scheme.label_of(replace(BASE, emotion="bad")) == "bad"  # a class passes through
    assert scheme.label_of(replace(BASE, emotion="others")) is None
