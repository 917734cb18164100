import pytest
import torch
from torch import nn

from cin_style import PerceptualLoss, gram_matrix
from cin_style.losses.perceptual import LossConfig, total_variation
from cin_style.losses.vgg import VGG16Features


def test_gram_matches_hand_computation():
    # Two channels over a 1x2 map: F = [[1, 2], [3, 4]].
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[[1 + 4, 3 + 8], [3 + 8, 9 + 16]]]) / 2.0  # F F^T / (H W)
    assert torch.equal(gram_matrix(f), expected)


def test_gram_stays_float32_under_bfloat16_autocast():
    """bf16-mixed training and the bf16 fit of a new style run the loss under autocast; the Gram
    matrix is a sum over H·W products and must not be rounded to bfloat16 (it was: 4e-3 off here)."""
    torch.manual_seed(0)
    features = torch.randn(2, 64, 64, 64)
    f = features.double().reshape(2, 64, -1)
    by_hand = (f @ f.transpose(1, 2) / 4096).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features)
    assert gram.dtype == torch.float32
    torch.testing.assert_close(gram, by_hand, rtol=1e-5, atol=1e-5)


def test_gram_is_independent_of_image_size_for_a_tiled_pattern():
    f = torch.randn(1, 4, 3, 5)
    assert torch.allclose(gram_matrix(f), gram_matrix(f.repeat(1, 1, 2, 3)), atol=1e-5)


def test_total_variation_by_hand():
    img = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    dy = [(1 - 0) ** 2, (3 - 1) ** 2]
    dx = [(1 - 0) ** 2, (3 - 1) ** 2]
    assert total_variation(img).item() == pytest.approx(sum(dy) / 2 + sum(dx) / 2)


class FakeVGG(nn.Module):
    """Stands in for VGG-16 with features that are easy to compute by hand."""

    layers = ["relu1_2", "relu2_2"]

    def forward(self, x, layers=None):
        out = {"relu1_2": x, "relu2_2": 2 * x[:, :, ::2, ::2]}
        return out if layers is None else {name: out[name] for name in layers}


def _fake_loss(**kw) -> PerceptualLoss:
    # relu1_2 Gram is 64x64 in the real network; the fake keeps 3 channels, so swap buffers in.
    multipliers = kw.pop("style_multipliers", None)
    config = LossConfig(content_layers={"relu2_2": 1.0}, style_layers={"relu1_2": 0.5}, **kw)
    loss = PerceptualLoss(num_styles=2, config=config, vgg=FakeVGG(), style_multipliers=multipliers)
    loss.register_buffer("gram_relu1_2", torch.zeros(2, 3, 3))
    return loss


def test_losses_match_hand_computation():
    torch.manual_seed(0)
    loss = _fake_loss(content_weight=2.0, style_weight=3.0, tv_weight=0.25, style_multipliers=[1.0, 4.0])
    styles = [torch.rand(3, 4, 4), torch.rand(3, 6, 2)]
    loss.set_style_targets(styles)
    out, content = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    terms = loss(out, content, torch.tensor([1, 0]))
    for b, s in enumerate([1, 0]):
        c = ((2 * out[b, :, ::2, ::2] - 2 * content[b, :, ::2, ::2]) ** 2).mean()
        f, t = out[b].reshape(3, -1), styles[s].reshape(3, -1)
        g_out, g_style = f @ f.T / f.shape[1], t @ t.T / t.shape[1]
        st = 0.5 * ((g_out - g_style) ** 2).mean()
        assert terms.content[b].item() == pytest.approx(2.0 * c.item(), rel=1e-5)
        assert terms.style[b].item() == pytest.approx(3.0 * [1.0, 4.0][s] * st.item(), rel=1e-5)
        assert terms.tv[b].item() == pytest.approx(0.25 * total_variation(out[b : b + 1]).item(), rel=1e-5)
    assert terms.total.mean().item() == pytest.approx(terms.means()["total"].item())


def test_each_sample_uses_its_own_style_targets(vgg_state):
    torch.manual_seed(0)
    loss = PerceptualLoss(num_styles=3, vgg=VGG16Features(layers=["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights=vgg_state))
    loss.set_style_targets([torch.rand(3, 40, 40), torch.rand(3, 32, 48) ** 3, torch.full((3, 36, 36), 0.3)])
    out, content = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    mixed = loss(out, content, torch.tensor([2, 0, 1]))
    for b, s in enumerate([2, 0, 1]):
        alone = loss(out[b : b + 1], content[b : b + 1], torch.tensor([s]))
        assert mixed.style[b].item() == pytest.approx(alone.style.item(), rel=1e-4)
        assert mixed.content[b].item() == pytest.approx(alone.content.item(), rel=1e-4)
    other = loss(out, content, torch.tensor([0, 1, 2]))
    assert not torch.allclose(other.style, mixed.style)


def test_unset_targets_are_an_error():
    loss = PerceptualLoss(num_styles=1, config={"vgg_weights": "random"})
    with pytest.raises(RuntimeError, match="set_style_targets"):
        loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.tensor([0]))


def test_gradients_flow_to_output_only(vgg_state):
    loss = PerceptualLoss(num_styles=1, vgg=VGG16Features(layers=["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights=vgg_state))
    loss.set_style_targets([torch.rand(3, 32, 32)])
    out = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss(out, torch.rand(1, 3, 32, 32), torch.tensor([0])).total.sum().backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.vgg.parameters())
