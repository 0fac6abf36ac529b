"""The training step `benchmarks/model_table.py` times for docs/models.md (no table is made)."""

from __future__ import annotations

import torch

from benchmark_script import load_benchmark
from mekit.models import create_model

bench = load_benchmark("model_table")


def conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.dim() >= 4]


def test_the_step_of_a_marked_network_runs_channels_last_with_fused_adam(monkeypatch):
    built = []
    real_adam = torch.optim.Adam

    def recording_adam(*args, **kwargs):
        built.append(kwargs)
        return real_adam(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    model = create_model("me_resnet_small", num_classes=3)
    step, layout = bench.training_step(model, batch_size=2)
    assert layout == torch.channels_last_3d
    assert all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in conv_weights(model))
    assert built and built[0].get("fused") is True
    before = [p.detach().clone() for p in model.parameters()]
    step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_an_unmarked_network_stays_contiguous():
    model = create_model("off_apexnet", num_classes=3)
    step, layout = bench.training_step(model, batch_size=2)
    assert layout == torch.contiguous_format
    assert all(w.is_contiguous() for w in conv_weights(model))
    step()
    assert bench.LAYOUT_NAMES[layout] == "contiguous"
