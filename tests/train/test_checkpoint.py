from __future__ import annotations

import json
import pickle

import pytest
import torch

from mekit.config import to_dict
from mekit.errors import MekitError
from mekit.models import create_model
from mekit.train import TrainConfig
from mekit.train.checkpoint import (
    FORMAT_VERSION,
    LoadedModel,
    load_model,
    model_paths,
    read_sidecar,
    save_model,
)

LABELS = ["negative", "positive", "surprise"]


def _trained(name: str, steps: int = 2) -> torch.nn.Module:
    """A model whose weights and BatchNorm running statistics differ from a fresh one."""
    torch.manual_seed(0)
    model = create_model(name, len(LABELS))
    shape = (4, *model.spec.input_shape)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(
            model(torch.randn(shape)), torch.tensor([0, 1, 2, 0])
        ).backward()
        opt.step()
    return model.eval()


def _save(tmp_path, model, name="ststnet", **extra):
    kwargs = {
        "model_name": name,
        "labels": LABELS,
        "model_kwargs": {},
        "input": {"flow_method": "farneback"},
        "config": to_dict(TrainConfig(epochs=3)),
        "metrics": {"uf1": 0.5, "uar": float("nan")},
        "training": {"corpus": "casme2", "protocol": "loso", "samples": 10},
    }
    kwargs.update(extra)
    return save_model(tmp_path / name, model, **kwargs)


@pytest.mark.parametrize("name", ["ststnet", "mobilevitv3_xxs"])
def test_round_trip_gives_identical_outputs(tmp_path, name):
    model = _trained(name)
    weights, sidecar = _save(tmp_path, model, name)
    assert (weights.name, sidecar.name) == (f"{name}.safetensors", f"{name}.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([weights.name, sidecar.name])

    rng_before = torch.get_rng_state()
    for path in (tmp_path / name, weights, sidecar, str(sidecar)):
        loaded = load_model(path)
        assert isinstance(loaded, LoadedModel) and not loaded.model.training
        assert loaded.name == name and loaded.labels == tuple(LABELS)
        x = torch.randn(3, *model.spec.input_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.equal(loaded.model(x), model(x))
        for key, value in model.state_dict().items():  # BN running stats included
            assert torch.equal(loaded.model.state_dict()[key], value), key
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_sidecar_contents(tmp_path):
    _, sidecar = _save(tmp_path, _trained("ststnet", steps=0))
    meta = json.loads(sidecar.read_text())
    assert meta["format"] == "mekit-model" and meta["format_version"] == FORMAT_VERSION
    assert meta["model"] == "ststnet" and meta["labels"] == LABELS
    assert meta["input"] == {
        "flow_method": "farneback",
        "kind": "flow",
        "size": 28,
        "channels": 3,
        "frames": None,
        "channel_names": ["u", "v", "strain"],
    }
    assert meta["config"]["epochs"] == 3 and meta["training"]["corpus"] == "casme2"
    assert meta["metrics"] == {"uf1": 0.5, "uar": None}  # NaN is not JSON
    assert len(meta["sha256"]) == 64 and meta["created"] and "mekit_version" in meta
    loaded = load_model(sidecar)
    assert loaded.meta == meta and loaded.input == meta["input"]


def test_save_rejects_mismatches(tmp_path):
    model = _trained("ststnet", steps=0)
    with pytest.raises(MekitError, match="size"):
        _save(tmp_path, model, input={"size": 64})
    with pytest.raises(MekitError, match=r"wrong shapes: classifier\.bias"):
        _save(tmp_path, model, labels=["a", "b"])  # a 3-class model saved with 2 labels
    with pytest.raises(MekitError, match="is a 'ststnet'"):
        _save(tmp_path, model, name="off_apexnet")
    assert list(tmp_path.iterdir()) == []


def test_tampered_weights_are_detected(tmp_path):
    weights, _ = _save(tmp_path, _trained("ststnet", steps=0))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # flip one bit of the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(MekitError, match=r"ststnet\.safetensors.*corrupt or was modified"):
        load_model(weights)


def test_wrong_format_and_versions_are_rejected(tmp_path):
    _, sidecar = _save(tmp_path, _trained("ststnet", steps=0))
    meta = json.loads(sidecar.read_text())

    def rewrite(**changes):
        sidecar.write_text(json.dumps({**meta, **changes}))

    rewrite(format="something-else")
    with pytest.raises(MekitError, match="not a mekit model"):
        load_model(sidecar)
    rewrite(format_version=FORMAT_VERSION + 1)
    with pytest.raises(MekitError, match="newer than this mekit"):
        load_model(sidecar)
    meta.pop("content_sha256")  # as a file written before the content hash existed
    rewrite(model="no_such_net")
    with pytest.raises(MekitError, match="unknown model 'no_such_net'"):
        load_model(sidecar)
    sidecar.write_text("{not json")
    with pytest.raises(MekitError, match="not valid JSON"):
        load_model(sidecar)
    sidecar.unlink()
    with pytest.raises(MekitError, match="sidecar .* not found"):
        load_model(tmp_path / "ststnet")


def test_the_same_weights_give_the_same_bytes(tmp_path):
    model = _trained("ststnet", steps=0)
    first, _ = _save(tmp_path / "a", model)
    for run in range(6):  # safetensors' metadata order was random: 2 keys, 1 in 2 each time
        again, _ = _save(tmp_path / f"b{run}", model)
        assert again.read_bytes() == first.read_bytes()
    header = first.read_bytes()[8 : 8 + int.from_bytes(first.read_bytes()[:8], "little")]
    assert header.index(b'"format"') < header.index(b'"mekit_model"')  # sorted, not hash order


def test_canonical_safetensors_does_not_depend_on_metadata_order():
    from safetensors.torch import load, save

    from mekit.train.checkpoint import canonical_safetensors

    tensors = {"w": torch.arange(5, dtype=torch.float32), "b": torch.ones(3)}
    blobs = {
        canonical_safetensors(save(tensors, metadata=dict(order)))
        for order in (
            [("a", "1"), ("m", "2"), ("z", "3")],
            [("z", "3"), ("a", "1"), ("m", "2")],
            [("m", "2"), ("z", "3"), ("a", "1")],
        )
    }
    assert len(blobs) == 1
    blob = blobs.pop()
    assert (8 + int.from_bytes(blob[:8], "little")) % 8 == 0
    assert all(torch.equal(load(blob)[k], v) for k, v in tensors.items())


@pytest.mark.parametrize(
    "field, value",
    [
        ("input", {"flow_method": "tvl1"}),  # an extra input key edited
        ("labels", ["negative", "surprise", "positive"]),  # outputs renamed
        ("model_kwargs", {"dropout": 0.9}),
    ],
)
def test_edits_to_the_sidecar_content_are_detected(tmp_path, field, value):
    _, sidecar = _save(tmp_path, _trained("ststnet", steps=0))
    meta = json.loads(sidecar.read_text())
    if field == "input":
        value = {**meta["input"], **value}
    sidecar.write_text(json.dumps({**meta, field: value}))
    with pytest.raises(MekitError, match=r"ststnet\.json was modified after saving"):
        load_model(sidecar)


def test_duplicate_labels_and_an_input_the_model_cannot_take_are_refused(tmp_path):
    _, sidecar = _save(tmp_path, _trained("ststnet", steps=0))
    meta = json.loads(sidecar.read_text())
    meta.pop("content_sha256")  # an old file: validated all the same
    sidecar.write_text(json.dumps({**meta, "labels": ["negative", "negative", "surprise"]}))
    with pytest.raises(MekitError, match="labels repeat negative"):
        load_model(sidecar)
    sidecar.write_text(json.dumps({**meta, "input": {**meta["input"], "size": 64}}))
    with pytest.raises(MekitError, match=r"ststnet\.json: input size = 64 but model 'ststnet'"):
        load_model(sidecar)
    sidecar.write_text(json.dumps(meta))  # an old file without the content hash still loads
    assert load_model(sidecar).labels == tuple(LABELS)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    from safetensors.torch import save_file

    weights, sidecar = _save(tmp_path, _trained("ststnet", steps=0))
    state = {k: v.contiguous() for k, v in _trained("ststnet", steps=0).state_dict().items()}
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(weights))
    meta = read_sidecar(sidecar)  # re-hash so only the key check can fail
    import hashlib

    from mekit.train.checkpoint import content_sha256

    meta["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta["content_sha256"] = content_sha256(meta)
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(
        MekitError, match=rf"missing keys: {dropped}.*unexpected keys: extra\.weight"
    ):
        load_model(sidecar)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    weights, _ = _save(tmp_path, _trained("ststnet"))

    def forbidden(*args, **kwargs):
        raise AssertionError("load_model must not unpickle")

    for module, attr in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, attr, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert load_model(weights).name == "ststnet"
    # the weights file is plain safetensors: an 8-byte header length, then a JSON header
    head = weights.read_bytes()
    size = int.from_bytes(head[:8], "little")
    assert json.loads(head[8 : 8 + size])["__metadata__"]["mekit_model"] == "ststnet"


def test_model_paths():
    assert model_paths("runs/m") == model_paths("runs/m.json") == model_paths("runs/m.safetensors")
    weights, sidecar = model_paths("runs/fold.03")
    assert (weights.name, sidecar.name) == ("fold.03.safetensors", "fold.03.json")
