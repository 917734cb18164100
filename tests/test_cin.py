import math

import pytest
import torch

from cin_style import ConditionalInstanceNorm2d, one_hot_styles


def _layer() -> ConditionalInstanceNorm2d:
    norm = ConditionalInstanceNorm2d(2, num_styles=3)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]))
        norm.beta.copy_(torch.tensor([[0.0, 1.0], [-2.0, 4.0], [10.0, 0.0]]))
    return norm


def _normalized_by_hand(values: list[float], eps: float = 1e-5) -> list[float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return [(v - mean) / math.sqrt(var + eps) for v in values]


X = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[-1.0, -1.0], [0.0, 2.0]]]])  # (1, 2, 2, 2)


def test_initialised_to_identity_affine():
    norm = ConditionalInstanceNorm2d(5, num_styles=4)
    assert norm.gamma.shape == (4, 5) and norm.beta.shape == (4, 5)
    assert torch.equal(norm.gamma, torch.ones(4, 5)) and torch.equal(norm.beta, torch.zeros(4, 5))
    assert norm.eps == 1e-5
    assert not list(norm.buffers()), "no running statistics"


@pytest.mark.parametrize("style", [0, 1, 2])
def test_selection_matches_hand_computation(style):
    norm = _layer()
    out = norm(X, one_hot_styles([style], 3))
    g, b = norm.gamma[style].tolist(), norm.beta[style].tolist()
    for c in range(2):
        expected = [v * g[c] + b[c] for v in _normalized_by_hand(X[0, c].flatten().tolist())]
        assert out[0, c].flatten().tolist() == pytest.approx(expected, abs=1e-5)


def test_blend_is_convex_combination_of_gamma_beta():
    norm = _layer()
    w = [0.2, 0.5, 0.3]
    out = norm(X, torch.tensor([w]))
    gamma = [sum(w[s] * norm.gamma[s, c].item() for s in range(3)) for c in range(2)]
    beta = [sum(w[s] * norm.beta[s, c].item() for s in range(3)) for c in range(2)]
    for c in range(2):
        expected = [v * gamma[c] + beta[c] for v in _normalized_by_hand(X[0, c].flatten().tolist())]
        assert out[0, c].flatten().tolist() == pytest.approx(expected, abs=1e-5)


def test_per_sample_styles_in_one_batch():
    norm = _layer()
    x = torch.randn(3, 2, 5, 4)
    both = norm(x, one_hot_styles([2, 0, 1], 3))
    for i, s in enumerate([2, 0, 1]):
        assert torch.allclose(both[i], norm(x[i : i + 1], one_hot_styles([s], 3))[0], atol=1e-6)


def test_constant_spatial_map_equals_vector_form():
    norm = _layer()
    x = torch.randn(2, 2, 6, 7)
    w = torch.tensor([[0.1, 0.6, 0.3], [0.0, 0.0, 1.0]])
    spatial = w[:, :, None, None].expand(2, 3, 12, 14)  # at another resolution: resized inside
    assert torch.allclose(norm(x, spatial), norm(x, w), atol=1e-6)


def test_spatial_map_gives_regions_their_own_style():
    norm = _layer()
    x = torch.randn(1, 2, 4, 4)
    w = torch.zeros(1, 3, 4, 4)
    w[:, 0, :, :2] = 1  # left half style 0
    w[:, 1, :, 2:] = 1  # right half style 1
    out = norm(x, w)
    assert torch.allclose(out[..., :2], norm(x, one_hot_styles([0], 3))[..., :2], atol=1e-6)
    assert torch.allclose(out[..., 2:], norm(x, one_hot_styles([1], 3))[..., 2:], atol=1e-6)


def test_gradients_reach_only_rows_in_use():
    norm = _layer()
    out = norm(torch.randn(4, 2, 3, 3), one_hot_styles([0, 2, 0, 2], 3))
    out.square().sum().backward()
    for table in (norm.gamma.grad, norm.beta.grad):
        assert table[1].abs().sum() == 0
        assert table[0].abs().sum() > 0 and table[2].abs().sum() > 0


def test_rejects_wrong_style_shapes():
    norm = _layer()
    with pytest.raises(ValueError, match="styles"):
        norm(X, torch.ones(1, 2))
    with pytest.raises(ValueError, match="style weights"):
        norm(X, torch.ones(3))


def test_fused_path_has_the_gradients_of_the_general_path():
    """Per-sample weights take one fused batch-norm kernel; per-pixel maps the general code.
    Both must train the same: equal outputs and equal gradients for x, gamma and beta."""
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 3)
    w = torch.tensor([[0.1, 0.6, 0.3], [0.0, 0.0, 1.0]])
    upstream = torch.randn(2, 2, 5, 3)
    grads = []
    for style in (w, w[:, :, None, None].expand(2, 3, 5, 3)):
        norm = _layer()
        xi = x.clone().requires_grad_(True)
        (norm(xi, style) * upstream).sum().backward()
        grads.append((xi.grad, norm.gamma.grad, norm.beta.grad))
    for fused, general in zip(*grads):
        assert torch.allclose(fused, general, atol=1e-5)


def test_fused_path_keeps_bfloat16_and_float32_statistics():
    norm = _layer()
    x = torch.randn(1, 2, 64, 64) * 100 + 1000  # a large mean: bf16 statistics would be far off
    out = norm(x.bfloat16(), one_hot_styles([0], 3))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), norm(x, one_hot_styles([0], 3)), atol=0.1)
