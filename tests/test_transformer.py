import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cin_style import ConditionalInstanceNorm2d, StyleTransformer, one_hot_styles
from cin_style.network import fastconv
from cin_style.network.transformer import ConvCIN

from _nets import logits_by_hand, random_style_net


def _counts(net: StyleTransformer) -> tuple[int, int]:
    conv = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d))
    affine = sum(m.gamma.numel() + m.beta.numel() for m in net.modules() if isinstance(m, ConditionalInstanceNorm2d))
    return conv, affine


@pytest.mark.parametrize("num_styles", [1, 3, 32])
def test_parameter_counts_at_width_one(num_styles):
    net = StyleTransformer(num_styles=num_styles)
    conv, affine = _counts(net)
    assert conv == 1_674_432
    assert affine == 3_206 * num_styles
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d)), "no conv biases"
    # Plus the photo skip: one gain per style and output channel.
    assert net.photo.gain.shape == (num_styles, 3)
    assert sum(p.numel() for p in net.parameters()) == conv + affine + 3 * num_styles
    assert sum(p.numel() for p in net.style_tables().values()) == (3_206 + 3) * num_styles


def test_width_multiplier_scales_channels():
    half = StyleTransformer(num_styles=2, width=0.5)
    assert half.encoder[0].conv.out_channels == 16 and half.residuals[0].conv1.conv.in_channels == 64
    assert half.output.conv.out_channels == 3
    assert _counts(half)[0] < _counts(StyleTransformer(num_styles=2))[0] / 3


def test_layout_reflection_padding_and_norm_after_every_conv():
    net = StyleTransformer(num_styles=2)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [9, 3, 3] + [3] * 10 + [3, 3, 9]
    assert [c.stride[0] for c in convs] == [1, 2, 2] + [1] * 10 + [1, 1, 1]
    assert len(net.norms()) == len(convs) == 16
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules()) == 16


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (17, 31), (33, 64), (65, 47)])
def test_keeps_any_size_and_stays_in_unit_range(size):
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=2, width=0.25)
    with torch.no_grad():
        for norm in net.norms():  # make the output non-trivial: scale it far beyond [0, 1]
            norm.gamma.mul_(5)
        x = torch.rand(2, 3, *size)
        y = net(x, one_hot_styles([0, 1], 2))
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_blend_endpoints_equal_pure_styles():
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=3, width=0.25)
    with torch.no_grad():
        for norm in net.norms():
            norm.gamma.normal_(1, 0.3)
            norm.beta.normal_(0, 0.3)
        x = torch.rand(1, 3, 24, 20)
        pure = net(x, one_hot_styles([1], 3))
        assert torch.equal(net(x, torch.tensor([[0.0, 1.0, 0.0]])), pure)
        assert not torch.allclose(net(x, one_hot_styles([0], 3)), pure, atol=1e-3)


def test_spatial_style_map_at_input_resolution():
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=2, width=0.25)
    x = torch.rand(1, 3, 30, 26)  # padded inside to 32x28: the map is padded with it
    w = torch.tensor([[0.3, 0.7]])
    with torch.no_grad(), fastconv.direct():  # exact convolutions: the two paths differ only in the norm's arithmetic
        assert torch.allclose(net(x, w[:, :, None, None].expand(1, 2, 30, 26)), net(x, w), atol=1e-6)


def test_rejects_bad_inputs():
    net = StyleTransformer(num_styles=2, width=0.25)
    with pytest.raises(ValueError, match="images must be"):
        net(torch.rand(1, 4, 8, 8), one_hot_styles([0], 2))
    with pytest.raises(ValueError, match="style-weight rows"):
        net(torch.rand(2, 3, 8, 8), one_hot_styles([0], 2))


@pytest.mark.parametrize("shape", [(2, 5, 1, 1), (1, 5, 3, 4), (1, 5, 9, 6)])
def test_upsampling_layer_equals_upsample_reflect_pad_conv(shape):
    """The decoder's phase-decomposed convolution must equal the layer it replaces, nearest x2
    upsampling + reflection padding + 3x3 convolution, in value and in gradient."""
    torch.manual_seed(0)
    layer = ConvCIN(5, 7, kernel_size=3, upsample=True, num_styles=1)
    x = torch.randn(shape, requires_grad=True)
    upstream = torch.randn(shape[0], 7, 2 * shape[2], 2 * shape[3])
    direct = layer.conv(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect"))
    (gx, gw) = torch.autograd.grad((direct * upstream).sum(), (x, layer.conv.weight))
    fast = layer.convolve(x)
    (fx, fw) = torch.autograd.grad((fast * upstream).sum(), (x, layer.conv.weight))
    assert fast.shape == direct.shape
    assert torch.allclose(fast, direct, atol=1e-5)
    assert torch.allclose(fx, gx, atol=1e-4) and torch.allclose(fw, gw, atol=1e-4)
    with torch.no_grad():  # inference interleaves the phases by one strided copy instead of stack + pixel_shuffle
        inferred = layer.convolve(x)
    assert torch.equal(inferred, fast)  # the same conv output, only copied differently: bit for bit


def test_without_the_photo_skip_the_network_cannot_see_brightness_or_contrast():
    """The first instance norm removes a*x + b (a > 0, the same for R, G, B): without the skip the
    output is the same for a photo and a darker, flatter copy, which is why the identity row needs
    the skip. With a gain the copy comes out different."""
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=2, width=0.25).eval()
    x = torch.rand(1, 3, 32, 32)
    flat = 0.5 * x + 0.1
    w = one_hot_styles(1, 2)
    with torch.no_grad():
        assert torch.allclose(net(x, w), net(flat, w), atol=1e-3)  # up to the norms' eps
        net.photo.gain[1] = 1.0
        assert (net(x, w) - net(flat, w)).abs().mean() > 0.05


def test_photo_skip_with_a_silent_last_layer_returns_the_photo():
    """A row with gain 1 and a last-layer gamma = beta = 0 gives sigmoid(logit(photo)): the photo,
    clamped to [eps, 1 - eps]; blending it with another row blends the gains like gamma/beta."""
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=2, width=0.25).eval()
    with torch.no_grad():
        net.output.norm.gamma[0] = 0.0
        net.output.norm.beta[0] = 0.0
        net.photo.gain[0] = 1.0
        x = torch.rand(2, 3, 37, 29)
        x[0, :, 0, 0] = 0.0  # black and white pixels stay finite and come back
        x[0, :, 0, 1] = 1.0
        out = net(x, one_hot_styles([0, 0], 2))
        eps = net.photo.eps
        assert torch.allclose(out, x.clamp(eps, 1 - eps), atol=1e-6)
        assert torch.equal((out * 255).round(), (x * 255).round())
        # Half way to style 1: the logit is the mean of both rows' last-layer maps plus half the photo's.
        half = torch.tensor([[0.5, 0.5]])
        y = x[:1, :, :36, :28]  # sides divisible by 4: no padding to undo by hand
        expected = torch.sigmoid(logits_by_hand(net, y, half) + 0.5 * torch.logit(y.clamp(eps, 1 - eps)))
        assert torch.allclose(net(y, half), expected, atol=1e-5)


def test_stages_describe_the_whole_network_once():
    """forward and the exact tiler walk net.stages(): every conv-CIN layer exactly once, in the
    order of the norms, with the residual stages marked; and the padding rule is public."""
    net = StyleTransformer(num_styles=2, width=0.25)
    layers = [layer for stage in net.stages() for layer, _ in stage.layers]
    assert [layer.norm for layer in layers] == net.norms()
    assert [stage.residual for stage in net.stages()] == [False] + [True] * net.config.num_residual_blocks + [False]
    assert net.padded_size(37, 5) == (40, 8) and net.padded_size(64, 64) == (64, 64)
    size = net.padded_size(37, 29)
    for layer in layers:
        size = layer.output_size(size)
    assert size == (40, 32)


def test_one_padding_rule_for_the_network_and_the_onnx_runtime():
    """centred_pad's golden widths, the network's pad is exactly it (and the crop after), and the
    NumPy pad of the torch-free runtime gives the same pixels as PyTorch's."""
    import numpy as np

    from cin_style.network.padding import centred_pad

    assert centred_pad(37, 29, multiple=4, min_size=8) == ((1, 2, 1, 2), True)  # 37 -> 40, 29 -> 32
    assert centred_pad(64, 64, multiple=4, min_size=8) == ((0, 0, 0, 0), True)
    assert centred_pad(5, 1, multiple=4, min_size=8) == ((3, 4, 1, 2), False)  # a 1-pixel side cannot mirror: the edge repeats
    net = StyleTransformer(num_styles=2, width=0.25)
    for h, w in ((37, 29), (5, 6), (1, 3)):
        x = torch.rand(1, 3, h, w)
        padded, _ = net.pad(x, torch.tensor([[1.0, 0.0]]))
        (left, right, top, bottom), reflect = centred_pad(h, w, multiple=4, min_size=8)
        assert padded.shape[-2:] == net.padded_size(h, w) and torch.equal(padded[..., top : top + h, left : left + w], x)
        array = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect" if reflect else "edge")
        assert np.array_equal(array, padded.numpy())


def test_inference_overwrites_only_the_layers_own_outputs():
    """At inference the activations and residual sums run in place (no new buffers); they must
    give exactly the graph's values and leave the stage's input alone."""
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=2, width=0.25).eval()
    x = torch.rand(1, 3, 40, 48)
    style = torch.tensor([[0.3, 0.7]])
    for stage in net.stages():
        graph = stage(x, style)  # the weights require grad: the autograd path, out of place
        kept = x.clone()
        with torch.no_grad():
            inferred = stage(x, style)
        assert graph.requires_grad and not inferred.requires_grad
        assert torch.equal(inferred, graph.detach()) and torch.equal(x, kept)
        x = inferred



def test_bf16_autocast_without_gradients_matches_training_mode():
    """Training's validation runs the transformer under bf16 autocast and inference mode. Above
    NNPACK's size floor the convolutions once left autocast for float32 NNPACK, whose output
    then met bf16 gamma/beta in the norm's kernel: run 9 of the bundled model died at its first
    validation (step 300). Both modes must compute the same bf16 network."""
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=3).eval()
    size = 128
    assert size * size >= fastconv.NNPACK_MIN_PIXELS
    x = torch.rand(2, 3, size, size)
    style = one_hot_styles(torch.tensor([0, 2]), 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.enable_grad():
            trained = net(x, style).detach()
        with torch.inference_mode():
            inferred = net(x, style)
    assert inferred.dtype == trained.dtype == torch.float32
    torch.testing.assert_close(inferred, trained, atol=2e-2, rtol=0)


# Twice as wide; a width that copies only some channels; one whose rounding leaves the first layer as it was.
@pytest.mark.parametrize("width", [0.5, 0.6, 0.26])
def test_widened_computes_the_same_function_and_its_copies_learn_apart(width):
    net = random_style_net(3, width=0.25).double()
    wide = net.widened(width, generator=torch.Generator().manual_seed(1)).double()
    assert [layer.conv.out_channels for layer in wide.encoder] == [round(c * width) for c in (32, 64, 128)]
    x = torch.rand(2, 3, 36, 44, dtype=torch.float64)
    blend = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]], dtype=torch.float64)
    regions = torch.zeros(2, 3, 36, 44, dtype=torch.float64)
    regions[:, 0, :, :20], regions[:, 2, :, 20:] = 1.0, 1.0
    for style in (blend, regions):
        with torch.no_grad():
            # The copy is made in float32 (the model's dtype): equal to float32's rounding.
            assert torch.allclose(wide(x, style), net(x, style), atol=1e-6, rtol=0)
    # Every new filter of the first layer is one of the old ones, with its gamma/beta columns.
    old_w, new_w = net.encoder[0].conv.weight, wide.encoder[0].conv.weight
    n = old_w.shape[0]
    assert torch.equal(new_w[:n], old_w)
    for k in range(n, new_w.shape[0]):
        (j,) = [j for j in range(n) if torch.equal(new_w[k], old_w[j])]
        assert torch.equal(wide.encoder[0].norm.gamma[:, k], net.encoder[0].norm.gamma[:, j])
        assert torch.equal(wide.encoder[0].norm.beta[:, k], net.encoder[0].norm.beta[:, j])
    # The next layer splits the original's input weights between the copies in unequal shares,
    # so the copies get unequal gradients and can come apart in training.
    wide.train()
    wide(x, blend).square().sum().backward()
    grad = wide.encoder[0].conv.weight.grad
    for k in range(n, new_w.shape[0]):
        j = next(j for j in range(n) if torch.equal(new_w[k], old_w[j]))
        assert not torch.allclose(grad[k], grad[j])


def test_widened_refuses_to_narrow():
    with pytest.raises(ValueError, match="wider, not narrower"):
        StyleTransformer(num_styles=2, width=0.5).widened(0.25)
