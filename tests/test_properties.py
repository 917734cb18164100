"""Property-based tests (hypothesis): the style-weight parser and image sizes."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cin_style import StyleModel, StyleTransformer
from cin_style.network.styles import StyleError, parse_style_string, style_weights

NAMES = ["great_wave", "starry_night", "the_scream", "lion", "a"]

finite_weights = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)  # up to 1.8e308: sums must not overflow


@given(st.dictionaries(st.sampled_from(NAMES), finite_weights, min_size=1))
def test_any_valid_mix_normalizes_to_a_convex_combination(mix):
    if max(mix.values()) == 0:
        with pytest.raises(StyleError, match="all zero"):
            style_weights(mix, NAMES)
        return
    w = style_weights(mix, NAMES).double()
    assert torch.isfinite(w).all() and (w >= 0).all()
    assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-6)
    top = max(mix.values())
    for name, value in mix.items():  # proportions are kept (up to float32 rounding)
        expected = (value / top) / sum(v / top for v in mix.values())  # scaled first, so subnormal weights do not underflow
        assert math.isclose(w[NAMES.index(name)].item(), expected, rel_tol=1e-5, abs_tol=1e-30)
    for i, name in enumerate(NAMES):
        if name not in mix:
            assert w[i] == 0


@given(st.dictionaries(st.sampled_from(NAMES), st.floats(min_value=1e-3, max_value=1e3), min_size=1))
def test_the_string_form_means_the_same_as_the_mapping(mix):
    text = ",".join(f"{name}={value!r}" for name, value in mix.items())
    assert parse_style_string(text) == mix
    assert torch.equal(style_weights(text, NAMES), style_weights(mix, NAMES))


@given(st.text(max_size=40))
@example("²")  # found by hypothesis: "²".isdigit() is True but int("²") fails
@example("٣")  # an Arabic-Indic digit: int() accepts it, but it is not an index the CLI documents
def test_arbitrary_text_is_a_mix_or_a_style_error(text):
    try:
        w = style_weights(text, NAMES)
    except StyleError as err:
        assert str(err)  # a message, never an empty one
    else:
        assert w.shape == (len(NAMES),) and math.isclose(w.sum().item(), 1.0, rel_tol=1e-6)


@given(st.sampled_from(NAMES), st.sampled_from([-1.0, -1e-9, float("nan"), float("inf"), float("-inf")]))
def test_negative_and_non_finite_weights_are_refused(name, bad):
    with pytest.raises(StyleError, match="negative|not finite"):
        style_weights({name: bad, "a" if name != "a" else "lion": 1.0}, NAMES)


_net = StyleTransformer(num_styles=2, width=0.125).eval()
_model = StyleModel(_net, ["x", "y"], device="cpu")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 600), st.integers(1, 600))
def test_any_size_in_gives_the_same_size_out(height, width):
    x = torch.rand(1, 3, height, width)
    with torch.no_grad():
        y = _net(x, torch.tensor([[0.3, 0.7]]))
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and 0 <= y.min() and y.max() <= 1


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 600), st.integers(1, 600))
def test_any_photo_size_round_trips_through_the_api(height, width):
    photo = Image.fromarray(np.full((height, width, 3), 128, np.uint8))
    assert _model.stylize(photo, style="y").size == (width, height)


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from([0.125, 0.25, 0.5]), st.integers(0, 3), st.integers(33, 90), st.integers(33, 90), st.integers(0, 2**16)
)
def test_the_tiler_and_forward_agree_on_any_network(width, blocks, height, image_width, seed):
    """Exact tiles walk the same stages as forward: on a randomly configured and randomly weighted
    network (width, residual blocks, gamma/beta, photo skip) they give the same image."""
    from cin_style.network.tiling import stylize_tiled

    torch.manual_seed(seed)
    net = StyleTransformer(num_styles=2, width=width, num_residual_blocks=blocks).eval()
    with torch.no_grad():
        for norm in net.norms():
            norm.gamma.normal_(1.0, 0.5)
            norm.beta.normal_(0.0, 0.5)
        net.photo.gain.uniform_(0.0, 1.0)
        x = torch.rand(1, 3, height, image_width)
        w = torch.tensor([[0.3, 0.7]])
        assert torch.allclose(stylize_tiled(net, x, w, tile=32), net(x, w), atol=1e-4)
