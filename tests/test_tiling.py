"""Exact tiled stylization: tiles with whole-image statistics reproduce the whole-image pass."""

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style import StyleModel, StyleTransformer
from cin_style.inference.style_model import OutOfMemory
from cin_style.io.images import load_image, to_tensor
from cin_style.io.modelfile import write_model
from cin_style.network.tiling import stylize_tiled, tile_passes
from _nets import random_style_net

CLI = str(Path(sys.executable).parent / "cin-style")


def _net(num_styles: int = 3, width: float = 0.5, seed: int = 0) -> StyleTransformer:
    return random_style_net(num_styles, width=width, seed=seed)  # strong, distinct styles: wrong statistics would show


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a - b).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@pytest.mark.parametrize("size", [(70, 45), (37, 101), (8, 9), (130, 257)])
def test_tiled_equals_whole_at_awkward_sizes(size):
    """Many small tiles, odd sizes, reflection at every border, two images with different blends."""
    net = _net()
    x = torch.rand(2, 3, *size)
    w = torch.softmax(torch.randn(2, 3), dim=1)
    calls = []
    with torch.no_grad():
        whole = net(x, w)
    tiled = stylize_tiled(net, x, w, tile=32, progress=lambda: calls.append(1))
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 2e-5
    assert len(calls) == tile_passes(net, *size, tile=32)
    # Naive tiling (each tile normalized on its own) is visibly different: the test can fail.
    if size == (130, 257):
        naive = torch.cat([net(x[..., :, :128], w), net(x[..., :, 128:], w)], dim=-1)
        assert (naive - whole).abs().max().item() > 0.05


def test_tiled_equals_whole_with_per_pixel_style_maps():
    net = _net()
    x = torch.rand(1, 3, 90, 66)
    maps = torch.softmax(4 * torch.randn(1, 3, 90, 66), dim=1)
    with torch.no_grad():
        whole = net(x, maps)
    assert (stylize_tiled(net, x, maps, tile=32) - whole).abs().max().item() < 2e-5


def test_1024_image_tiled_matches_whole_to_40_db(data_root):
    net = _net(width=1.0)
    photo = load_image(sorted((data_root / "content" / "val").glob("*.jpg"))[0])
    x = to_tensor(photo.resize((1024, 1024)))[None]
    w = torch.tensor([[0.0, 1.0, 0.0]])
    with torch.no_grad():
        whole = net(x, w)
    tiled = stylize_tiled(net, x, w, tile=256)
    assert _psnr(tiled, whole) >= 40.0
    assert (tiled - whole).abs().max().item() < 1e-4


def test_tile_argument_is_checked():
    with pytest.raises(ValueError, match="at least 32"):
        stylize_tiled(_net(), torch.rand(1, 3, 40, 40), torch.tensor([[1.0, 0, 0]]), tile=16)


# --- the API's automatic tiling and its out-of-memory fall-back ----------------------------


@pytest.fixture
def model() -> StyleModel:
    return StyleModel(_net(), ["a", "b", "c"], device="cpu")


def test_explicit_tile_gives_the_whole_result(model):
    x = torch.rand(1, 3, 80, 96)
    whole = model.stylize_tensor(x, model.weights("b"), tile=0)
    tiled = model.stylize_tensor(x, model.weights("b"), tile=32)
    assert (tiled - whole).abs().max().item() < 2e-5


def test_cpu_policy_groups_a_batch_of_small_images_and_tiles_only_a_large_one(model, monkeypatch):
    """Above the CPU's whole-pass limit a batch of small images goes through whole, a few at a time
    (no tiling overhead); only an image that alone exceeds the limit is tiled."""
    import cin_style.inference.style_model as api

    monkeypatch.setattr(api, "CPU_WHOLE_PIXEL_LIMIT", 2 * 48 * 48)
    batches, tiled = [], []
    real_forward, real_tiled = model.transformer.forward, model._tiled
    monkeypatch.setattr(model.transformer, "forward", lambda x, w: batches.append(len(x)) or real_forward(x, w))
    monkeypatch.setattr(model, "_tiled", lambda *a: tiled.append(1) or real_tiled(*a))
    x = torch.rand(5, 3, 48, 48)
    w = model.weights("c")
    got = model.stylize_tensor(x, w)
    assert batches == [2, 2, 1] and not tiled
    with torch.inference_mode():  # the same convolution algorithms as stylize_tensor's (cin_style.network.fastconv)
        expected = real_forward(x, w.expand(5, -1))
    assert (got - expected).abs().max().item() < 1e-5
    model.stylize_tensor(torch.rand(1, 3, 80, 80), w)  # 6,400 pixels alone: above the limit
    assert tiled == [1]


def _raise_oom(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_falls_back_to_tiles(model, monkeypatch):
    x = torch.rand(1, 3, 64, 64)
    expected = model.stylize_tensor(x, model.weights("a"))
    monkeypatch.setattr(model.transformer, "forward", _raise_oom)
    with pytest.warns(UserWarning, match="out of memory.*tiles"):
        got = model.stylize_tensor(x, model.weights("a"))
    assert (got - expected).abs().max().item() < 2e-5


def test_out_of_memory_with_tiling_off_says_what_to_do(model, monkeypatch):
    monkeypatch.setattr(model.transformer, "forward", _raise_oom)
    with pytest.raises(OutOfMemory, match="--tile"):
        model.stylize_tensor(torch.rand(1, 3, 64, 64), model.weights("a"), tile=0)


def test_other_errors_are_not_mistaken_for_out_of_memory(model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(model.transformer, "forward", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="shape mismatch"):
            model.stylize_tensor(torch.rand(1, 3, 64, 64), model.weights("a"))


def test_cli_tile_option(tmp_path):
    model_file = write_model(tmp_path / "m.safetensors", _net(), ["a", "b", "c"])
    Image.fromarray((np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    outs = {}
    for tile in ("off", "32"):
        out = tmp_path / f"{tile}.png"
        cmd = [CLI, "stylize", "-m", model_file, tmp_path / "p.png", "-s", "b", "--tile", tile, "-o", out, "--engine", "torch"]  # float32 both ways
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs[tile] = np.asarray(Image.open(out), dtype=np.int16)
    assert np.abs(outs["off"] - outs["32"]).max() <= 1  # rounding to 8 bits at most
    r = subprocess.run([CLI, "stylize", "-m", model_file, tmp_path / "p.png", "-s", "b", "--tile", "8", "-o", tmp_path / "x.png"], capture_output=True, text=True)
    assert r.returncode == 2 and "at least 32" in r.stderr and not (tmp_path / "x.png").exists()


def test_cli_out_of_memory_falls_back_or_names_the_option(tmp_path, monkeypatch, capsys):
    from cin_style import cli

    model_file = write_model(tmp_path / "m.safetensors", _net(), ["a", "b", "c"])
    Image.new("RGB", (64, 48), "gray").save(tmp_path / "p.png")
    monkeypatch.setattr(StyleTransformer, "forward", _raise_oom)
    args = ["stylize", "-m", str(model_file), str(tmp_path / "p.png"), "-s", "a", "--device", "cpu"]
    assert cli.main([*args, "-o", str(tmp_path / "auto.png")]) == 0
    err = capsys.readouterr().err
    assert "warning: out of memory stylizing 64x48 on cpu in one piece; retrying in 256-pixel tiles" in err
    assert Image.open(tmp_path / "auto.png").size == (64, 48)
    assert cli.main([*args, "-o", str(tmp_path / "off.png"), "--tile", "off"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory" in err[0] and "--tile" in err[0] and not (tmp_path / "off.png").exists()
