"""NNPACK's Winograd and FFT convolutions for CPU inference (cin_style.network.fastconv), and the engines that use them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cin_style.network import fastconv
from cin_style.inference.style_model import StyleModel, pretrained_path
from cin_style.quality.evaluate import psnr
from cin_style.io.images import to_tensor

needs_nnpack = pytest.mark.skipif(not fastconv.available(), reason="this PyTorch has no NNPACK for this CPU")

#: (in, out, kernel, input side): the network's stride-1 layers, small.
LAYERS = [(3, 32, 9, 112), (128, 128, 3, 100), (64, 128, 3, 100), (32, 3, 9, 112)]


@needs_nnpack
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: f"{l[0]}to{l[1]}k{l[2]}")
def test_fast_convolutions_equal_direct_ones_up_to_float32_rounding(layer, batch):
    cin, cout, k, side = layer
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, cin, side, side, generator=gen)
    w = torch.randn(cout, cin, k, k, generator=gen) / (cin * k * k) ** 0.5
    expected = F.conv2d(x.double(), w.double()).float()  # the exact result, in float64
    with torch.no_grad():
        fast = fastconv.conv2d(x, w)
        with fastconv.direct():
            plain = fastconv.conv2d(x, w)
    assert torch.equal(plain, F.conv2d(x, w))  # direct(): PyTorch's own convolution, bit for bit
    assert not torch.equal(fast, plain)  # another algorithm ran (its rounding differs)...
    scale = expected.abs().max()
    assert (fast - expected).abs().max() / scale < 2e-5  # ...and is as exact as float32 allows
    assert (plain - expected).abs().max() / scale < 2e-5


@needs_nnpack
def test_gradients_strides_and_other_dtypes_take_the_direct_path():
    x = torch.rand(1, 8, 20, 20, requires_grad=True)
    w = torch.randn(16, 8, 3, 3)
    y = fastconv.conv2d(x, w)
    assert torch.equal(y, F.conv2d(x, w))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(fastconv.conv2d(x, w, stride=2), F.conv2d(x, w, stride=2))
        assert torch.equal(fastconv.conv2d(x.double(), w.double()), F.conv2d(x.double(), w.double()))


@needs_nnpack
def test_direct_is_local_to_its_thread():
    import threading

    seen = {}
    with fastconv.direct():
        thread = threading.Thread(target=lambda: seen.update(other=fastconv.enabled()))
        thread.start()
        thread.join()
        seen["here"] = fastconv.enabled()
    assert seen == {"other": True, "here": False} and fastconv.enabled()


@needs_nnpack
def test_the_default_cpu_engine_paints_what_exact_pytorch_paints(data_root, monkeypatch):
    """The bundled model, auto (NNPACK) against --engine torch (direct float32): the same picture."""
    monkeypatch.setattr(fastconv, "native_bf16", lambda: False)  # as on a CPU without native bfloat16
    photo = Image.open(data_root / "content" / "val" / "kodim05.jpg").convert("RGB").resize((384, 256))
    fast = StyleModel.load(pretrained_path(), device="cpu")
    exact = StyleModel.load(pretrained_path(), device="cpu", engine="torch")
    assert fast.engine.name == "nnpack" and not fast.engine.direct and exact.engine.name == "torch" and exact.engine.direct
    a, b = fast.stylize(photo, "hokusai_great_wave"), exact.stylize(photo, "hokusai_great_wave")
    assert float(psnr(to_tensor(a)[None], to_tensor(b)[None])) > 60.0  # measured: about 95 dB
    x = to_tensor(photo)[None]
    raw_fast, raw_exact = fast.stylize_tensor(x, fast.weights("durer_lion")), exact.stylize_tensor(x, exact.weights("durer_lion"))
    assert not torch.equal(raw_fast, raw_exact)  # the fast path really ran


@pytest.mark.parametrize("native", [True, False])
def test_auto_uses_bfloat16_exactly_where_the_cpu_has_it(data_root, monkeypatch, native):
    """On a CPU with native bfloat16 (AMX, AVX-512 BF16) the default engine autocasts whole images
    to bfloat16: within the issue's 40 dB of float32, and the identity row still gives the photo
    back (the photo skip stays float32). Forced here, so that it runs on every CPU (where bfloat16
    is emulated it is only slow)."""
    monkeypatch.setattr(fastconv, "native_bf16", lambda: native)
    model = StyleModel.load(pretrained_path(), device="cpu")
    exact = StyleModel.load(pretrained_path(), device="cpu", engine="torch")
    assert (model.engine.name == "bf16") is native and exact.engine.name == "torch"
    if not native:
        return
    x = to_tensor(Image.open(data_root / "content" / "val" / "kodim05.jpg").convert("RGB").resize((192, 128)))[None]
    for style in ("hokusai_great_wave", "van_gogh_starry_night"):
        fast, reference = model.stylize_tensor(x, model.weights(style)), exact.stylize_tensor(x, exact.weights(style))
        assert fast.dtype == torch.float32 and not torch.equal(fast, reference)  # bfloat16 really ran
        assert float(psnr(fast, reference)) > 40.0  # measured: about 56-58 dB
    assert float(psnr(model.stylize_tensor(x, model.weights("identity")), x)) > 40.0

