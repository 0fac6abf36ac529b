from __future__ import annotations

import torch
from torch import nn

import mekit.models.apex_neighbour  # noqa: F401  (registers the model)
from mekit.models.registry import create_model, get_spec


def _inputs(b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    apex = torch.rand(b, 1, 1, 64, 64, generator=g).expand(b, 1, 8, 64, 64)
    flows = torch.randn(b, 3, 8, 64, 64, generator=g)
    return torch.cat([apex, flows], dim=1)


def test_spec_is_apex_plus_8_flows_of_64_px():
    spec = get_spec("apex_neighbour_fusion")
    assert (spec.input_kind, spec.channels, spec.frames, spec.size) == (
        "apex_flow_sequence",
        4,
        8,
        64,
    )
    assert spec.channel_names == ("apex", "dx", "dy", "magnitude")
    assert spec.u_channel == 1


def test_apex_stream_reads_only_the_first_apex_copy():
    torch.manual_seed(0)
    model = create_model("apex_neighbour_fusion", 3).eval()
    x = _inputs()
    other_copies = x.clone()
    other_copies[:, 0, 1:] = torch.rand_like(other_copies[:, 0, 1:])
    new_apex = x.clone()
    new_apex[:, 0, 0] = torch.rand_like(new_apex[:, 0, 0])
    with torch.no_grad():
        base = model.apex_features(x)
        assert torch.equal(model.apex_features(other_copies), base)
        assert torch.equal(model(other_copies), model(x))
        assert not torch.allclose(model.apex_features(new_apex), base)


def test_flow_stream_reads_the_flows_and_not_the_apex():
    torch.manual_seed(0)
    model = create_model("apex_neighbour_fusion", 3).eval()
    x = _inputs(seed=1)
    new_flows, new_apex = x.clone(), x.clone()
    new_flows[:, 1:, 3] += 1.0  # one neighbouring flow changes
    new_apex[:, 0] = 0.0
    with torch.no_grad():
        base = model.flow_features(x)
        assert not torch.allclose(model.flow_features(new_flows), base)
        assert torch.equal(model.apex_features(new_flows), model.apex_features(x))
        assert torch.equal(model.flow_features(new_apex), base)


def test_two_layer_lstm_top_state_is_fused_with_the_apex_features():
    torch.manual_seed(0)
    model = create_model("apex_neighbour_fusion", 3).eval()
    assert isinstance(model.lstm, nn.LSTM) and model.lstm.num_layers == 2
    assert model.fusion[0].in_features == 128 + model.lstm.hidden_size
    seen = []
    model.fusion.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    x = _inputs()
    with torch.no_grad():
        model(x)
        expected = torch.cat([model.apex_features(x), model.flow_features(x)], dim=1)
    torch.testing.assert_close(seen[0], expected)


def test_order_of_the_neighbouring_flows_matters():
    torch.manual_seed(0)
    model = create_model("apex_neighbour_fusion", 3).eval()
    x = _inputs(seed=2)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x.flip(dims=(2,))), atol=1e-5)


def test_clip_output_does_not_depend_on_its_batch_mates_in_training():
    torch.manual_seed(0)
    model = create_model("apex_neighbour_fusion", 3, dropout=0.0).train()
    x = _inputs(b=3, seed=3)
    other = x.clone()
    other[1:] = torch.randn_like(other[1:])
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(other)[0])
