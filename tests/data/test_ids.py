import pytest

from mekit.data.ids import canonical_id, canonical_key, loose_key, match_loosely


@pytest.mark.parametrize(
    "spellings",
    [
        # SMIC: zero-padded subjects and clip prefixes in some copies
        [("smic", "s1", "s1_ne_01"), ("smic", "s01", "s01_ne_01"), ("SMIC", "S01", "S01_NE_01")],
        [("smic", "s20", "s20_po_03"), ("smic", "s020", "s20_po_03")],
        # SAMM: subject as an integer or three digits, in the clip name too
        [("samm", "006", "006_1_2"), ("samm", "6", "6_1_2"), ("samm", "06", "006_1_2")],
        # CASME II: subject with or without 'sub' and padding, case
        [
            ("casme2", "sub01", "EP02_01f"),
            ("casme2", "sub1", "ep02_01f"),
            ("casme2", "1", "EP02_01F"),
            ("casmeii", "01", "Ep02_01f"),
        ],
    ],
)
def test_public_naming_variants_have_one_key(spellings):
    keys = {canonical_key(*s) for s in spellings}
    assert len(keys) == 1, keys


def test_different_samples_stay_apart():
    assert canonical_key("smic", "s1", "s1_ne_01") != canonical_key("smic", "s11", "s11_ne_01")
    assert canonical_key("samm", "006", "006_1_2") != canonical_key("samm", "006", "006_1_3")
    assert canonical_key("casme2", "sub01", "EP02_01f") != canonical_key(
        "casme2", "sub10", "EP02_01f"
    )
    # another corpus keeps its names (only the dataset is lower-cased)
    assert canonical_key("Synthetic", "s01", "Clip_1f") == ("synthetic", "s01", "Clip_1f")


def test_canonical_id_of_whole_ids():
    assert canonical_id("smic/s01/s01_ne_01") == "smic/s1/s1_ne_01"
    assert canonical_id("samm/6/6_1_2") == "samm/006/006_1_2"
    assert canonical_id("casme2/sub1/ep02_01F") == "casme2/sub01/EP02_01f"
    assert canonical_id("no-slashes") == "no-slashes"


def test_casme2_suffix_joins_loosely_only_where_unambiguous():
    # CASME II sub17 has two different clips, EP05_03 and EP05_03f
    assert canonical_key("casme2", "sub17", "EP05_03") != canonical_key(
        "casme2", "sub17", "EP05_03f"
    )
    assert loose_key("casme2", "sub01", "EP02_01f") == loose_key("casme2", "sub01", "EP02_01")
    wanted = [
        ("casme2", "sub01", "EP02_01f"),
        ("casme2", "sub17", "EP05_03"),
        ("casme2", "sub17", "EP05_03f"),
    ]
    given = [("casme2", "1", "EP02_01"), ("casme2", "sub17", "EP05_03")]
    assert match_loosely(wanted, given) == {
        ("casme2", "sub01", "EP02_01f"): ("casme2", "1", "EP02_01"),
        ("casme2", "sub17", "EP05_03"): ("casme2", "sub17", "EP05_03"),
    }  # EP05_03f is not given: EP05_03 must not stand in for it
    # a copy without suffixes and both sub17 clips cannot be told apart loosely: no guess
    given = [("casme2", "sub17", "EP05_03"), ("casme2", "sub17", "EP05_03f")]
    assert match_loosely(wanted[1:], given) == dict(zip(wanted[1:], given, strict=True))
