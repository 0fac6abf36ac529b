from collections import Counter
from pathlib import Path

from mekit.data.composite import composite_members, select_composite
from mekit.data.schema import Sample


def test_the_shipped_list_has_the_published_counts():
    members = composite_members()
    assert len(members) == 442
    per_dataset = Counter(d for d, _, _ in members)
    assert per_dataset == {"smic": 164, "casme2": 145, "samm": 133}
    assert len({(d, s) for d, s, _ in members}) == 68
    classes = Counter((d, label) for (d, _, _), label in members.items())
    assert classes[("smic", "negative")] == 70 and classes[("smic", "positive")] == 51
    assert classes[("casme2", "negative")] == 88 and classes[("casme2", "surprise")] == 25
    assert classes[("samm", "negative")] == 92 and classes[("samm", "surprise")] == 15


def sample(dataset, subject, clip, emotion="disgust"):
    return Sample(
        id=f"{dataset}/{subject}/{clip}",
        dataset=dataset,
        subject=subject,
        clip=clip,
        onset=1,
        apex=2,
        offset=3,
        emotion=emotion,
        aus="",
        fps=200.0,
        frames=(Path("a"),),
        frame_numbers=(1,),
    )


def test_selection_keeps_listed_samples_and_other_corpora():
    members = composite_members()
    (d, s, c), label = next((k, v) for k, v in members.items() if k[0] == "casme2")
    listed = sample(d, s, c)
    extra = sample("casme2", "sub01", "EP99_99")  # not in the list
    mine = sample("synthetic", "sub01", "EP01_01")  # a corpus the list does not cover
    chosen = select_composite([listed, extra, mine])
    assert [x.id for x in chosen.samples] == [listed.id, mine.id]
    assert [x.id for x in chosen.skipped] == [extra.id]
    assert chosen.labels == {listed.id: label}
    # the other 144 CASME II members were not given, and are reported; SAMM/SMIC were absent
    assert len(chosen.missing) == 144 and all(m.startswith("casme2/") for m in chosen.missing)
