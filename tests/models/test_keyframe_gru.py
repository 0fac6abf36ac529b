from __future__ import annotations

import pytest
import torch
from torch import nn

import mekit.models.keyframe_gru  # noqa: F401  (registers the model)
from mekit.errors import MekitError
from mekit.models.keyframe_gru import LocalSelfAttention
from mekit.models.registry import create_model, get_spec


def _frames(b: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, 16, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_spec_is_16_grey_frames_of_64_px():
    spec = get_spec("keyframe_gru")
    assert (spec.input_kind, spec.channels, spec.frames, spec.size) == ("frames", 1, 16, 64)
    assert spec.u_channel is None


def test_selects_exactly_n_top_scoring_frames_in_temporal_order():
    torch.manual_seed(0)
    model = create_model("keyframe_gru", 3).eval()
    assert model.selected_indices_ is None
    with torch.no_grad():
        model(_frames())
    indices, scores = model.selected_indices_, model.frame_scores_
    assert indices.shape == (3, 6) and scores.shape == (3, 16)
    assert (indices[:, 1:] > indices[:, :-1]).all()  # increasing: temporal order, no repeats
    for row, score in zip(indices, scores, strict=True):
        assert set(row.tolist()) == set(score.topk(6).indices.tolist())


def test_num_selected_option_and_its_limits():
    model = create_model("keyframe_gru", 3, num_selected=4)
    model(_frames(b=2))
    assert model.selected_indices_.shape == (2, 4)
    with pytest.raises(MekitError, match="num_selected"):
        create_model("keyframe_gru", 3, num_selected=0)
    with pytest.raises(MekitError, match="cannot select 17"):
        create_model("keyframe_gru", 3, num_selected=17)(_frames(b=1))


def test_scorer_gets_gradients_through_the_selection_gate():
    torch.manual_seed(0)
    model = create_model("keyframe_gru", 3)
    loss = nn.functional.cross_entropy(model(_frames()), torch.tensor([0, 1, 2]))
    loss.backward()
    for name, p in model.scorer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_global_comparison_ignores_what_all_frames_share():
    torch.manual_seed(0)
    model = create_model("keyframe_gru", 3)
    features = torch.randn(2, 16, 64)
    shared = torch.randn(2, 1, 64)
    torch.testing.assert_close(model.score(features + shared), model.score(features))


def test_local_attention_reaches_only_the_window():
    torch.manual_seed(0)
    attention = LocalSelfAttention(8, window=1)
    x = torch.randn(1, 10, 8)
    moved = x.clone()
    moved[0, 5] += 3.0
    changed = (attention(moved) - attention(x)).abs().amax(dim=-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [4, 5, 6]


def test_clip_output_does_not_depend_on_its_batch_mates_in_training():
    torch.manual_seed(0)
    model = create_model("keyframe_gru", 3, dropout=0.0).train()
    x = _frames(seed=1)
    other = x.clone()
    other[1:] = torch.rand_like(other[1:])
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(other)[0])
