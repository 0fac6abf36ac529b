"""Trained models on disk: weights as safetensors plus a JSON sidecar, never pickle.

    save_model(Path("runs/ststnet"), model, model_name="ststnet", labels=[...], ...)
    # -> runs/ststnet.safetensors (the state dict) and runs/ststnet.json (what it is)
    loaded = load_model("runs/ststnet")  # or "runs/ststnet.json" / ".safetensors"
    loaded.model(x)  # eval mode

The sidecar records the model name and options (to rebuild it from the registry), the class
labels in output order, the input the model takes, the training config, metrics and
provenance, the SHA-256 of the weights file and `content_sha256`, a SHA-256 over the sidecar
fields that decide what the model computes (model, model_kwargs, labels, input, sha256).
Loading checks both hashes and that the labels and input agree with the registered model
before reading the weights, and reads them with safetensors only, so a model file cannot run
code the way a pickled checkpoint (`torch.load`) can. The same weights always give the same
bytes (the safetensors header is written with sorted keys), so identical runs give identical
hashes.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

import mekit
from mekit.errors import MekitError
from mekit.fileio import atomic_write
from mekit.models import create_model, get_spec
from mekit.models.registry import ModelSpec

FORMAT = "mekit-model"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
_REQUIRED = ("model", "model_kwargs", "labels", "input", "sha256")
# The sidecar fields `content_sha256` covers: everything that changes what the model computes.
CONTENT_FIELDS = ("model", "model_kwargs", "labels", "input", "sha256")


@dataclass(frozen=True)
class LoadedModel:
    """A model read by `load_model`: the module (eval mode, CPU), its registered name, class
    labels in output order, its input description and the whole sidecar (`meta`)."""

    model: nn.Module
    name: str
    labels: tuple[str, ...]
    input: dict[str, Any]
    meta: dict[str, Any]

    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.name)


def model_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, sidecar) paths for `path`, given as either file or as the common stem.

    "runs/m", "runs/m.json" and "runs/m.safetensors" all give (runs/m.safetensors, runs/m.json).
    Any other suffix is part of the stem: "fold.03" gives fold.03.safetensors.
    """
    p = Path(path)
    if p.suffix in (WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        p = p.with_suffix("")
    return p.with_name(p.name + WEIGHTS_SUFFIX), p.with_name(p.name + SIDECAR_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(meta: Mapping[str, Any]) -> str:
    """SHA-256 of the sidecar's `CONTENT_FIELDS`, as canonical JSON (sorted keys, compact)."""
    fields = {key: meta.get(key) for key in CONTENT_FIELDS}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def canonical_safetensors(blob: bytes) -> bytes:
    """`blob` (a safetensors file) with its JSON header re-written with sorted keys.

    safetensors writes the metadata in hash-map order, which changes from run to run; the
    tensors' data offsets are relative to the end of the header, so re-writing it is safe.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def write_weights(
    weights: Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> str:
    """Write a state dict as safetensors at `weights`, whole or not at all (written aside and
    renamed); returns the file's SHA-256 for the sidecar. The same tensors and metadata always
    give the same bytes."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    blob = canonical_safetensors(safetensors_bytes(dict(state), metadata=dict(metadata)))
    atomic_write(weights, blob)
    return hashlib.sha256(blob).hexdigest()


def _jsonable(value: Any) -> Any:
    """Plain JSON types: tuples -> lists, numpy/torch scalars -> numbers, NaN/inf -> None."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, torch.Tensor | np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise MekitError(f"cannot write {value!r} ({type(value).__name__}) to a model sidecar")


def _build(name: str, num_classes: int, kwargs: Mapping[str, Any]) -> nn.Module:
    """create_model without touching the caller's global RNG (initialisation draws from it)."""
    with torch.random.fork_rng(devices=[]):
        return create_model(name, num_classes, **dict(kwargs))


def _compare_keys(
    want: Mapping[str, torch.Tensor], have: Mapping[str, torch.Tensor], what: str
) -> None:
    """MekitError naming missing, unexpected and wrongly shaped tensors of `have`."""
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    shapes = sorted(
        f"{k} {tuple(have[k].shape)} != {tuple(want[k].shape)}"
        for k in set(want) & set(have)
        if tuple(want[k].shape) != tuple(have[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {'; '.join(shapes)}")
    if problems:
        raise MekitError(f"{what}: " + "; ".join(problems))


def _spec_input(spec: ModelSpec) -> dict[str, Any]:
    return {
        "kind": spec.input_kind,
        "size": spec.size,
        "channels": spec.channels,
        "frames": spec.frames,
        "channel_names": list(spec.channel_names),
    }


def _check_input(info: Mapping[str, Any], spec: ModelSpec, where: str) -> None:
    """MekitError unless each input key the spec fixes is absent from `info` or agrees."""
    for key, value in _spec_input(spec).items():
        if key in info and _jsonable(info[key]) != _jsonable(value):
            raise MekitError(
                f"{where}input {key} = {info[key]!r} but model {spec.name!r} takes "
                f"{key} = {value!r}"
            )


def save_model(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_name: str,
    labels: Sequence[str],
    model_kwargs: Mapping[str, Any],
    input: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write `model`'s weights and sidecar; returns (weights path, sidecar path).

    `path` is the stem or either file name (see `model_paths`). `labels` name the model's
    outputs in order; `model_kwargs` are the options it was created with (create_model);
    `input` describes what it takes (kind, size, channels, frames, channel_names are filled in
    from the model's spec where absent, and must agree with it where given, plus anything the
    caller adds, e.g. the flow method); `config` is the training config (e.g.
    `mekit.config.to_dict(train_config)`); `metrics` and `training` (corpus, protocol,
    samples...) are provenance. All must be JSON-serialisable; NaN/inf are written as null.

    The state dict (BatchNorm running statistics included) is checked against a freshly
    created `model_name` with len(labels) classes, so a file that would not load is never
    written. Each file is written to a temporary name and renamed into place.
    """
    spec = get_spec(model_name)
    own = getattr(model, "spec", None)
    if isinstance(own, ModelSpec) and own.name != model_name:
        raise MekitError(f"model_name {model_name!r} but the model is a {own.name!r}")
    labels = [str(label) for label in labels]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise MekitError(f"labels must be at least 2 distinct class names, got {labels}")

    info = dict(input)
    for key, value in _spec_input(spec).items():
        if key not in info:
            info[key] = value
    _check_input(info, spec, "")

    kwargs = _jsonable(dict(model_kwargs))  # as load_model will see them
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    reference = _build(model_name, len(labels), kwargs).state_dict()
    _compare_keys(
        reference,
        state,
        f"model does not match {model_name!r} with {len(labels)} classes and options {kwargs}",
    )

    weights, sidecar = model_paths(path)
    digest = write_weights(weights, state, {"format": "pt", "mekit_model": model_name})

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mekit_version": mekit.__version__,
        "model": model_name,
        "model_kwargs": kwargs,
        "labels": labels,
        "input": _jsonable(info),
        "config": _jsonable(dict(config)),
        "metrics": _jsonable(dict(metrics)) if metrics is not None else None,
        "training": _jsonable(dict(training)) if training is not None else None,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sha256": digest,
    }
    meta["content_sha256"] = content_sha256(meta)
    atomic_write(sidecar, json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return weights, sidecar


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated sidecar of the model at `path` (stem or either file), without weights."""
    _, sidecar = model_paths(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MekitError(
            f"model sidecar {sidecar} not found (a mekit model is a .safetensors file with a "
            ".json file of the same name beside it)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MekitError(f"model sidecar {sidecar} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MekitError(f"{sidecar} is not a mekit model file (format is not {FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MekitError(f"{sidecar}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise MekitError(
            f"{sidecar} has format_version {version}, newer than this mekit reads "
            f"({FORMAT_VERSION}); upgrade mekit (it was written by mekit "
            f"{meta.get('mekit_version', '?')})"
        )
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise MekitError(f"{sidecar} lacks {', '.join(missing)}")
    labels = meta["labels"]
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) for x in labels)
    ):
        raise MekitError(f"{sidecar}: labels must be a list of at least 2 class names")
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise MekitError(
            f"{sidecar}: labels repeat {', '.join(repeated)}; each output needs its own class "
            "name (restore the file as saved, or retrain)"
        )
    if not isinstance(meta["model_kwargs"], dict) or not isinstance(meta["input"], dict):
        raise MekitError(f"{sidecar}: model_kwargs and input must be JSON objects")
    stored = meta.get("content_sha256")
    # Files written before content_sha256 existed have none; they are read as before.
    if stored is not None and stored != content_sha256(meta):
        raise MekitError(
            f"{sidecar} was modified after saving: its {', '.join(CONTENT_FIELDS)} no longer "
            "match its content_sha256; restore the file as saved, or retrain"
        )
    return meta


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read a model written by `save_model`; `path` is the stem or either file.

    Checks the sidecar's format and version, that the model is registered, and the weights
    file's SHA-256 against the sidecar before reading it with safetensors (no pickle);
    missing, unexpected or wrongly shaped tensors raise `MekitError` naming them. The model is
    on the CPU in eval mode. The caller's torch RNG state is left untouched.
    """
    weights, sidecar = model_paths(path)
    meta = read_sidecar(path)
    name = meta["model"]
    spec = get_spec(name)  # MekitError listing the known models
    _check_input(meta["input"], spec, f"{sidecar}: ")
    if not weights.is_file():
        raise MekitError(f"model weights {weights} not found (named by {sidecar})")
    if file_sha256(weights) != meta["sha256"]:
        raise MekitError(
            f"model weights {weights} do not match the SHA-256 in {sidecar}: the file is "
            "corrupt or was modified after saving"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise MekitError(f"cannot read model weights {weights}: {e}") from None
    labels = tuple(meta["labels"])
    model = _build(name, len(labels), meta["model_kwargs"])
    _compare_keys(model.state_dict(), state, f"weights {weights} do not fit model {name!r}")
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedModel(model=model, name=name, labels=labels, input=meta["input"], meta=meta)
