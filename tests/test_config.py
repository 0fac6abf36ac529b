from dataclasses import dataclass
from enum import StrEnum

import pytest

from mekit.config import from_mapping, merge, parse_overrides, to_dict
from mekit.errors import MekitError


class Loss(StrEnum):
    CE = "ce"
    FOCAL = "focal"


@dataclass(frozen=True)
class Inner:
    epochs: int = 10
    lr: float = 0.1
    loss: Loss = Loss.CE


@dataclass(frozen=True)
class Outer:
    model: str = "a"
    inner: Inner = Inner()


def test_overrides_merge_into_nested_config():
    values = merge({"inner": {"lr": 0.5}}, parse_overrides(["inner.epochs=3", "model=b"]))
    values = merge(values, parse_overrides(["inner.loss=focal"]))
    config = from_mapping(Outer, values)
    assert config == Outer(model="b", inner=Inner(epochs=3, lr=0.5, loss=Loss.FOCAL))
    assert config.inner.loss is Loss.FOCAL
    assert to_dict(config) == {"model": "b", "inner": {"epochs": 3, "lr": 0.5, "loss": "focal"}}


def test_unknown_key_and_bad_type_are_user_errors():
    with pytest.raises(MekitError, match="inner.epoch'.*valid: epochs, loss, lr"):
        from_mapping(Outer, {"inner": {"epoch": 3}})
    with pytest.raises(MekitError, match="wants int"):
        from_mapping(Outer, {"inner": {"epochs": "many"}})
    with pytest.raises(MekitError, match="choose from ce, focal"):
        from_mapping(Outer, {"inner": {"loss": "hinge"}})
    with pytest.raises(MekitError, match="section.key=value"):
        parse_overrides(["epochs"])
