from collections import Counter
from pathlib import Path

from mekit.data.composite import (
    composite_members,
    composite_shortfall,
    composite_size,
    select_composite,
)
from mekit.data.schema import Sample, Skipped


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
    # the other 441 members were not given, and are reported, those of absent corpora too
    assert len(chosen.missing) == 441
    assert Counter(m.split("/")[0] for m in chosen.missing) == {
        "casme2": 144,
        "samm": 133,
        "smic": 164,
    }


def test_copies_that_spell_ids_differently_match_the_list():
    # SMIC s01/s01_ne_01 for s1/s1_ne_01, SAMM 6/6_1_2 for 006/006_1_2, CASME II EP02_01
    # for EP02_01f: the naming of the composite as commonly shared matched 111 of 442 before.
    variants = [
        sample("smic", "s01", "s01_ne_01", "negative"),
        sample("samm", "6", "6_1_2", "negative"),
        sample("casme2", "sub1", "EP02_01", "positive"),
        sample("CASME2", "01", "ep02_01F", "positive"),  # also case and a bare subject number
    ]
    for variant in variants:
        chosen = select_composite([variant])
        assert [x.id for x in chosen.samples] == [variant.id], variant.id
        assert chosen.skipped == () and len(chosen.missing) == 441
        assert list(chosen.labels.values()) == [variant.emotion]


def test_shortfall_names_each_missing_sample_and_why():
    members = list(composite_members())
    given = [sample(*m) for m in members[:3]]
    chosen = select_composite(given)
    skipped = [Skipped(given[1].id, "apex_image: image x.jpg is truncated")]
    gone = dict(composite_shortfall(chosen, {given[0].id}, skipped))
    assert len(gone) == 441
    assert gone["/".join(members[1])] == "apex_image: image x.jpg is truncated"
    assert gone["/".join(members[2])] == "left out of the run"
    assert gone["/".join(members[5])] == "not in the corpora given"
    assert composite_size() == 442
