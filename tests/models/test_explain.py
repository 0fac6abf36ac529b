from __future__ import annotations

import pytest
import torch
from torch import nn

import mekit.models.apex_neighbour  # noqa: F401  (registers the model)
from mekit.errors import MekitError
from mekit.models.explain import grad_cam, last_conv
from mekit.models.registry import create_model


class QuadrantNet(nn.Module):
    """Class 0 reads only the top-left quadrant of the conv output, class 1 the bottom-right.

    Channel 0 fires on bright blobs, channel 1 on dark ones (fixed weights, bias -0.1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([torch.ones(1, 3, 3), -torch.ones(1, 3, 3)]) / 9)
            self.conv.bias.fill_(-0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(self.conv(x))
        h, w = r.shape[-2] // 2, r.shape[-1] // 2
        top_left = r[:, :, :h, :w].mean(dim=(2, 3)).sum(dim=1)
        bottom_right = r[:, :, h:, w:].mean(dim=(2, 3)).sum(dim=1)
        return torch.stack([top_left, bottom_right], dim=1)


class Tiny3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.relu(self.conv(x)).mean(dim=(2, 3, 4))))


def _blobs(b: int = 1) -> torch.Tensor:
    """16 x 16 images: a bright blob (2.0) in the top-left, a dark one (-1.0) bottom-right."""
    x = torch.zeros(b, 1, 16, 16)
    x[:, :, 2:6, 2:6] = 2.0
    x[:, :, 10:14, 10:14] = -1.0
    return x


def _quadrant_mass(cam: torch.Tensor) -> tuple[float, float]:
    total = float(cam.sum())
    return float(cam[:8, :8].sum()) / total, float(cam[8:, 8:].sum()) / total


def test_cam_peaks_in_the_only_quadrant_the_class_reads():
    model = QuadrantNet()
    x = _blobs()
    cam0 = grad_cam(model, x, class_idx=0)[0]
    cam1 = grad_cam(model, x, class_idx=1)[0]
    assert divmod(int(cam0.argmax()), 16)[0] < 8 and divmod(int(cam0.argmax()), 16)[1] < 8
    assert divmod(int(cam1.argmax()), 16)[0] >= 8 and divmod(int(cam1.argmax()), 16)[1] >= 8
    assert _quadrant_mass(cam0)[0] > 0.95
    assert _quadrant_mass(cam1)[1] > 0.95


def test_default_class_is_the_prediction_and_classes_can_differ_per_sample():
    model = QuadrantNet()
    x = _blobs(b=2)
    assert model(x).argmax(dim=1).tolist() == [0, 0]
    torch.testing.assert_close(grad_cam(model, x), grad_cam(model, x, class_idx=0))
    per_sample = grad_cam(model, x, class_idx=torch.tensor([0, 1]))
    torch.testing.assert_close(per_sample[1], grad_cam(model, x[1:], class_idx=1)[0])
    assert _quadrant_mass(per_sample[0])[0] > 0.95 and _quadrant_mass(per_sample[1])[1] > 0.95


def test_2d_and_3d_maps_have_the_input_size_and_unit_range():
    torch.manual_seed(0)
    small_cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 3)
    )
    for model, x in (
        (small_cnn, torch.randn(3, 1, 20, 20)),
        (Tiny3d(), torch.randn(3, 1, 4, 12, 12)),
    ):
        cam = grad_cam(model, x)
        assert cam.shape == (3, *x.shape[-2:])
        assert cam.min() >= 0 and cam.max() <= 1
        for one in cam:
            assert float(one.max()) in (0.0, 1.0)


def test_3d_cam_weights_channels_by_mean_gradient_and_averages_over_time():
    torch.manual_seed(0)
    model = Tiny3d().eval()
    x = torch.randn(1, 1, 4, 12, 12)
    with torch.no_grad():
        a = model.conv(x)[0]  # (C, T, h, w), h, w = H, W: no upsampling
        target = int(model(x).argmax())
        # d score / d a = fc weight / (T h w) where the ReLU passes, 0 elsewhere
        grads = model.fc.weight[target].reshape(-1, 1, 1, 1) * (a > 0) / a[0].numel()
        alpha = grads.mean(dim=(1, 2, 3))
        expected = torch.relu(torch.einsum("c,cthw->thw", alpha, a)).mean(dim=0)
    torch.testing.assert_close(grad_cam(model, x)[0], expected / expected.max())


def test_folded_per_frame_layer_on_a_registered_model():
    torch.manual_seed(0)
    model = create_model("apex_neighbour_fusion", 3)
    x = torch.randn(2, *model.spec.input_shape)
    assert last_conv(model) is [m for m in model.flow_cnn if isinstance(m, nn.Conv2d)][-1]
    flow_cam = grad_cam(model, x)
    apex_layer = [m for m in model.apex_cnn if isinstance(m, nn.Conv2d)][-1]
    apex_cam = grad_cam(model, x, target_layer=apex_layer)
    for cam in (flow_cam, apex_cam):
        assert cam.shape == (2, 64, 64) and cam.min() >= 0 and cam.max() <= 1
    assert not torch.allclose(flow_cam, apex_cam)


def test_hooks_are_removed_and_modes_restored_even_on_error():
    model = Tiny3d().train()
    model.dropout.eval()  # a mixed state must survive
    x = torch.randn(2, 1, 4, 12, 12)
    grad_cam(model, x)
    with pytest.raises(MekitError, match="class_idx"):
        grad_cam(model, x, class_idx=7)
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert model.training and model.conv.training and not model.dropout.training
    assert all(p.grad is None for p in model.parameters())


def test_bad_target_layers_raise():
    with pytest.raises(MekitError, match="target_layer"):
        grad_cam(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(1, 1, 2, 2))
    with pytest.raises(MekitError, match="did not run"):
        grad_cam(QuadrantNet(), _blobs(), target_layer=nn.Conv2d(1, 1, 1))
