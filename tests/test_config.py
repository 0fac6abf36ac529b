import dataclasses
import re
import typing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pytest

from mekit.app.analyze import AnalyzeConfig
from mekit.app.au_training import AUTrainConfig
from mekit.app.server.settings import ServeSettings
from mekit.config import Choice, Config, from_mapping, merge, parse_overrides, to_dict
from mekit.errors import MekitError
from mekit.faces.align import FaceConfig
from mekit.models.mobilevitv3 import CONFIGS as MOBILEVIT_VARIANTS
from mekit.models.mobilevitv3 import MobileViTv3Config
from mekit.motion.features import FeatureConfig
from mekit.pipeline.config import BlendConfig, ExperimentConfig, SyntheticPretrainConfig
from mekit.spot.input.signals import SignalConfig
from mekit.spot.input.track import TrackConfig
from mekit.spot.learned.spotter import SpotterConfig
from mekit.spot.speech import SpeechConfig
from mekit.spot.spotters import ApexConfig, SpotConfig
from mekit.synth.au_flows import AUFlowConfig
from mekit.synth.config import SynthConfig
from mekit.train.averaging import AverageConfig
from mekit.train.loop import TrainConfig
from mekit.train.multilabel import MultiLabelConfig


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


# --- the one mechanism, on every config class ---------------------------------------------

CONFIGS = (
    AnalyzeConfig,
    AUTrainConfig,
    ServeSettings,
    FaceConfig,
    FeatureConfig,
    ExperimentConfig,
    SpotterConfig,
    SignalConfig,
    SpeechConfig,
    ApexConfig,
    SpotConfig,
    TrackConfig,
    AUFlowConfig,
    SynthConfig,
    AverageConfig,
    TrainConfig,
    SyntheticPretrainConfig,
    MultiLabelConfig,
    BlendConfig,
)


def _subclasses(cls: type) -> set[type]:
    return {s for c in cls.__subclasses__() for s in (c, *_subclasses(c))}


def _choice_fields(cls: type) -> list[tuple[type, str, type]]:
    """(cls, field, its Choice enum) for each field of `cls` holding a choice."""
    out = []
    for name, hint in typing.get_type_hints(cls).items():
        for part in typing.get_args(hint) or (hint,):
            if isinstance(part, type) and issubclass(part, Choice):
                out.append((cls, name, part))
    return out


CHOICE_FIELDS = [f for cls in CONFIGS for f in _choice_fields(cls)]


def test_every_config_class_is_checked_here():
    mine = {c for c in _subclasses(Config) if c.__module__.startswith("mekit.")}
    assert mine == {*CONFIGS, MobileViTv3Config}  # the variant table has no defaults
    assert all(dataclasses.is_dataclass(c) and c.__dataclass_params__.frozen for c in CONFIGS)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_round_trip_through_to_dict(cls):
    config = cls()
    written = to_dict(config)
    assert from_mapping(cls, written) == config
    assert to_dict(from_mapping(cls, written)) == written
    for value in written.values():  # plain TOML/JSON values: choices as strings
        assert type(value) in (str, int, float, bool, list, dict, type(None))


@pytest.mark.parametrize("name", sorted(MOBILEVIT_VARIANTS))
def test_model_variant_configs_round_trip_and_are_checked(name):
    variant = MOBILEVIT_VARIANTS[name]
    assert from_mapping(MobileViTv3Config, to_dict(variant)) == variant
    with pytest.raises(MekitError, match=r"mobilevitv3.dims .* multiples of num_heads"):
        dataclasses.replace(variant, num_heads=7)
    with pytest.raises(MekitError, match=r"setting 'mobilevitv3.channels' wants a list of 3"):
        dataclasses.replace(variant, channels=(8, 8))


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_refuses_a_wrong_type_when_made(cls):
    for f in dataclasses.fields(cls):
        setting = cls().setting(f.name)
        with pytest.raises(MekitError, match=rf"{re.escape(setting)}\b.*(got|is) <object"):
            cls(**{f.name: object()})


@pytest.mark.parametrize(
    ("cls", "name", "kind"), CHOICE_FIELDS, ids=[f"{c.__name__}.{n}" for c, n, _ in CHOICE_FIELDS]
)
def test_every_choice_refuses_a_bad_value_and_names_the_choices(cls, name, kind):
    setting = cls().setting(name)
    listed = ", ".join(m.value for m in kind)
    with pytest.raises(MekitError, match=rf"setting '{setting}'.*{listed}"):
        cls(**{name: "bogus"})
    value = next(iter(kind)).value
    config = cls(**{name: value})  # the string is taken and held as the enum member
    assert getattr(config, name) is kind(value) and getattr(config, name) == value
    assert to_dict(config)[name] == value and type(to_dict(config)[name]) is str
    assert f"{name}={value!r}" in repr(config)  # reprs as its string


def test_choice_fields_cover_the_configs_that_have_choices():
    owners = {cls.__name__ for cls, _, _ in CHOICE_FIELDS}
    assert {"TrainConfig", "ExperimentConfig", "SpotConfig", "SpotterConfig"} <= owners
    assert {"AverageConfig", "SignalConfig", "ApexConfig", "ServeSettings"} <= owners


def test_ranges_and_bool_for_int_are_refused_when_made():
    with pytest.raises(MekitError, match="setting 'train.epochs' wants int, got True"):
        TrainConfig(epochs=True)
    with pytest.raises(MekitError, match=r"train.epochs must be >= 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(MekitError, match=r"spot.p must be in \(0, 1\), got 1.5"):
        SpotConfig(p=1.5)
    with pytest.raises(MekitError, match=r"spot.speech.min_cycles must be >= 1"):
        SpotConfig(speech=SpeechConfig(min_cycles=0))
    with pytest.raises(MekitError, match=r"setting 'synth.amplitude_px' wants a list of 2"):
        SynthConfig(amplitude_px=(1.0, 2.0, 3.0))
    with pytest.raises(MekitError, match=r"setting 'synth.emotions\[0\]' wants str"):
        SynthConfig(emotions=(1,))
    with pytest.raises(MekitError, match="setting 'signals.k' wants int or None, got 2.5"):
        SignalConfig(k=2.5)


def test_constructors_keep_what_callers_pass():
    assert SpotConfig(z_cap=8).z_cap == 8  # an int for a float, as given
    assert SynthConfig(emotions=["happiness"]).emotions == ("happiness",)  # a list -> tuple
    assert SpotterConfig(augment="auto").augments and SpotterConfig(augment=False).augment is False
    assert SpotterConfig(kind=None).kind is None
    assert ServeSettings(data_dir="rel").data_dir == Path("rel").resolve()


def _set(cls, *items):
    return from_mapping(cls, parse_overrides(list(items)))


def test_set_path_converts_text_to_each_type():
    config = _set(TrainConfig, "lr=.5", "augment_flip=no", "focal_alpha=0.25,0.75", "loss=focal")
    assert config.lr == 0.5 and config.augment_flip is False
    assert config.focal_alpha == (0.25, 0.75) and config.loss == "focal"
    assert _set(TrainConfig, "lr=1").lr == 1.0 and type(_set(TrainConfig, "lr=1").lr) is float
    assert _set(SpotterConfig, "augment=true").augment is True
    assert _set(SpotterConfig, "augment=auto").augment == "auto"
    assert _set(SynthConfig, "amplitude_px=[1, 2]").amplitude_px == (1.0, 2.0)
    spot = _set(SpotConfig, 'region_weights=[["brows", 1], ["mouth", 0.5]]')
    assert spot.region_weights == (("brows", 1.0), ("mouth", 0.5))
    assert from_mapping(SignalConfig, {"k": None}).k is None  # JSON null where None is allowed
    nested = from_mapping(ExperimentConfig, {"train": {"epochs": 3}, "face": {"size": 64}})
    assert nested.train.epochs == 3 and nested.face.size == 64


@pytest.mark.parametrize(
    ("cls", "item", "message"),
    [
        (TrainConfig, "epochs=true", "'epochs' wants int, got True"),
        (TrainConfig, "epochs=2.5", "'epochs' wants int, got 2.5"),
        (TrainConfig, "augment_flip=maybe", "'augment_flip' wants bool, got 'maybe'"),
        (TrainConfig, "selection=best", "'selection' is 'best'; choose from fixed, val-split"),
        (SpotterConfig, "augment=sometimes", "'augment' wants bool or one of auto"),
        (SpotterConfig, "kind=both", "'kind' wants one of micro, macro or None"),
        (SignalConfig, "k=fast", "'k' wants int or None, got 'fast'"),
        (SynthConfig, "amplitude_px=[1]", "'amplitude_px' wants a list of 2"),
        (SynthConfig, 'amplitude_px=["a", 2]', r"'amplitude_px\[0\]' wants float"),
        (SynthConfig, "emotions=happiness", "'emotions' wants a list of str"),
        (SpotConfig, "speech=1", "'speech' wants SpeechConfig"),
        (ExperimentConfig, "train.epochs=x", "'train.epochs' wants int"),
    ],
)
def test_set_path_refuses_wrong_types_naming_the_setting(cls, item, message):
    with pytest.raises(MekitError, match=message):
        _set(cls, item)


@dataclass(frozen=True)
class Typed(Config, section="typed"):
    mode: Literal["a", "b"] = "a"
    size: int | None = None
    pair: tuple[int, float] = (1, 2.0)
    names: list[str] = dataclasses.field(default_factory=list)
    path: Path = Path("x")


def test_literal_union_tuple_list_and_path_hints():
    assert from_mapping(Typed, {"mode": "b", "size": 3, "path": "y/z"}).path == Path("y/z")
    assert from_mapping(Typed, {"names": ["p", "q"], "pair": [3, 4]}).pair == (3, 4.0)
    for values, message in [
        ({"mode": "c"}, "setting 'mode' is 'c'; choose from a, b"),
        ({"mode": True}, "choose from a, b"),
        ({"size": "big"}, "'size' wants int or None"),
        ({"pair": [1, 2, 3]}, r"'pair' wants a list of 2 \(int, float\)"),
        ({"names": [True]}, r"'names\[0\]' wants str"),
        ({"path": 3}, "'path' wants Path"),
    ]:
        with pytest.raises(MekitError, match=message):
            from_mapping(Typed, values)
    with pytest.raises(MekitError, match="setting 'typed.size' wants int or None, got '3'"):
        Typed(size="3")  # a constructor does not parse text


def test_the_cli_stops_on_a_wrong_type_with_one_line_naming_the_setting(tmp_path, capsys):
    from mekit.cli.main import main

    for args, message in [
        (["analyze", str(tmp_path / "none.mp4"), "--set", "signals.k=fast"], "'signals.k' wants"),
        (["train", "--corpus", str(tmp_path), "--set", "train.selection=best"], "fixed, val-split"),
        (["train", "--corpus", str(tmp_path), "--set", "train.augment_flip=maybe"], "wants bool"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "mekit: error: setting" in err and message in err and "Traceback" not in err
