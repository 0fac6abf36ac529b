"""FACS vocabulary shared by the synthetic generator (which renders AUs) and the AU model (which
reports them): one table, so the names a report shows are the ones the generator drew."""

from __future__ import annotations

AU_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    12: "lip corner puller",
    14: "dimpler",
    15: "lip corner depressor",
    17: "chin raiser",
    20: "lip stretcher",
    25: "lips part",
    45: "blink",
}
