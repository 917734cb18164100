"""Paint at any size: the working size, guided upsampling, and strokes that keep their size."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style import StyleModel
from cin_style.io.paintings import find_paintings, load_style_image
from cin_style.quality.evaluate import model_loss
from cin_style.io.images import load_image, to_tensor
from cin_style.inference.strokes import StrokeError, _box_mean, guided_upsample, parse_stroke, working_size
from cin_style.network.styles import IDENTITY

from _nets import random_style_net as _net

CLI = str(Path(sys.executable).parent / "cin-style")
BUNDLED = Path(__file__).resolve().parents[1] / "cin_style" / "models" / "paintings.safetensors"


def _photo(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth picture with edges: blocks of colour, blurred a little, plus a gradient."""
    rng = np.random.default_rng(seed)
    blocks = torch.from_numpy(rng.random((1, 3, 6, 9))).float()
    x = torch.nn.functional.interpolate(blocks, size=(height, width), mode="nearest")
    ramp = torch.linspace(0, 0.3, width)[None, None, None]
    return (0.7 * x + ramp).clamp(0, 1)


# --- the working size -------------------------------------------------------------------


def test_working_size_by_hand():
    assert working_size(3000, 4000, 1.0) == (256, 341)  # 4000 * 256 / 3000 = 341.3
    assert working_size(4000, 3000, 2) == (171, 128)
    assert working_size(3000, 4000, 0.5) == (512, 683)
    assert working_size(3000, 4000, 1.0, reference=384) == (384, 512)
    assert working_size(200, 300, 1.0) == (200, 300)  # never above the photo's own size
    assert working_size(3000, 4000, "native") == (3000, 4000)
    assert parse_stroke(" Native ") == "native" and parse_stroke("1.5") == 1.5
    for bad in (0, -1, "0", "-0.5", "abc", "", float("nan"), float("inf"), True, None):
        with pytest.raises(StrokeError):
            working_size(3000, 4000, bad)
    with pytest.raises(StrokeError, match="below the network's minimum of 8 px; use at most 32"):
        working_size(3000, 4000, 64)  # 256 / 64 = 4 px


# --- guided upsampling ------------------------------------------------------------------


def test_box_mean_against_a_loop():
    x = torch.rand(2, 7, 9, dtype=torch.float64)
    r = 2
    expected = torch.empty_like(x)
    for i in range(7):
        for j in range(9):
            expected[:, i, j] = x[:, max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean(dim=(1, 2))
    assert torch.allclose(_box_mean(x, r), expected, atol=1e-12)
    assert np.allclose(_box_mean(x.numpy(), r), expected.numpy(), atol=1e-12)  # the NumPy path, same code


def test_guided_upsampling_returns_its_input_when_guide_and_image_are_the_same_picture():
    big = _photo(300, 450)
    small = torch.nn.functional.interpolate(big, size=(100, 150), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    same = guided_upsample(small, small, big, prior=1.0)  # the strength dial's 0: the fit falls back to the photo
    assert (same - big).abs().max().item() < 1e-4
    fitted = guided_upsample(small, small, big)  # a painting row's prior (0): still the photo, where it has contrast
    psnr = -10 * torch.log10((fitted - big).square().mean()).item()
    assert psnr > 35.0
    # A painting that ignores the photo stays that painting, scaled up: no photo detail is added.
    flat = torch.full_like(small, 0.25)
    assert (guided_upsample(flat, small, big) - 0.25).abs().max().item() < 1e-4
    # NumPy (the ONNX path) computes the same.
    painted = torch.rand_like(small)
    a = guided_upsample(painted, small, big)
    b = guided_upsample(painted.numpy(), small.numpy(), big.numpy())
    assert isinstance(b, np.ndarray) and np.abs(a.numpy() - b).max() < 2e-3


def test_guided_upsampling_keeps_the_painting_at_the_working_size_and_the_photos_edges_at_full_size():
    big = _photo(480, 720)
    small = torch.nn.functional.interpolate(big, size=(160, 240), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    torch.manual_seed(3)
    strokes = torch.nn.functional.interpolate(torch.rand(1, 3, 40, 60), size=(160, 240), mode="bilinear", align_corners=False)
    painted = (0.6 * small.flip(1) + 0.4 * strokes).clamp(0, 1)  # a colour map of the photo plus strokes it does not explain
    out = guided_upsample(painted, small, big)
    back = torch.nn.functional.interpolate(out, size=(160, 240), mode="bicubic", antialias=True, align_corners=False)
    assert (back - painted).abs().mean().item() < 0.02  # shrunk back, it is the painting
    plain = torch.nn.functional.interpolate(painted, size=(480, 720), mode="bicubic", align_corners=False)

    def edges(x):
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean(1).flatten()

    target = edges(big)
    corr = lambda a: torch.corrcoef(torch.stack([edges(a), target]))[0, 1].item()  # noqa: E731
    assert corr(out) > corr(plain) + 0.2


# --- the model at any size --------------------------------------------------------------


@pytest.mark.skipif(not BUNDLED.is_file(), reason="this build has no bundled model")
def test_style_term_rises_with_size_for_native_and_stays_flat_for_default(data_root):
    model = StyleModel.pretrained(device="cpu", engine="torch")
    loss = model_loss(model)
    name = "van_gogh_starry_night"
    painting = find_paintings(data_root / "styles", [name], model.training.get("style_files"))[name]
    grams = loss.style_grams(load_style_image(painting, 256)[None])
    photo = load_image(data_root / "content" / "val" / "kodim23.jpg")

    def resized(image, short):
        s = short / min(image.size)
        return image.resize((round(image.width * s), round(image.height * s)), Image.Resampling.LANCZOS)

    def style_term(image):
        x = to_tensor(resized(image, 256))[None]
        with torch.no_grad():
            return float(loss(x, x, style_grams=grams).style)

    reference = style_term(model.stylize(resized(photo, 256), name))
    native = [style_term(model.stylize(resized(photo, short), name, stroke="native")) / reference for short in (512, 1024)]
    default = [style_term(model.stylize(resized(photo, short), name)) / reference for short in (512, 1024)]
    assert native[0] > 1.4 and native[1] > native[0] + 0.3  # strokes shrink to noise as the photo grows
    assert abs(default[1] - default[0]) < 0.1 and max(default) < native[0] - 0.2  # ... and keep their size by default


def test_strength_zero_still_returns_the_photo_exactly_at_any_size():
    net = _net(3)
    with torch.no_grad():  # an identity row as trained: the photo skip at gain 1, the last layer's logits 0
        net.photo.gain[2] = 1.0
        net.output.norm.gamma[2] = 0.0
        net.output.norm.beta[2] = 0.0
    model = StyleModel(net, ["wave", "stars", IDENTITY], device="cpu")
    photo = Image.fromarray((_photo(600, 900)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    assert model.working_size(600, 900, 1.0) == (256, 384)  # painted at the working size, not natively
    out = model.stylize(photo, style="stars", strength=0.0)
    assert np.array_equal(np.asarray(out), np.asarray(photo))
    assert not np.array_equal(np.asarray(model.stylize(photo, style="stars", strength=0.5)), np.asarray(photo))


def test_masks_are_still_exact_away_from_their_edges_at_any_size():
    model = StyleModel(_net(3, seed=1), ["wave", "stars", "lion"], device="cpu")
    photo = Image.fromarray((_photo(768, 1152, seed=2)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    h, w = 768, 1152
    mask = np.zeros((h, w), np.float32)
    mask[:, : w // 2] = 1.0
    out = np.asarray(model.stylize(photo, style="stars", masks={"wave": mask}), dtype=np.int16)
    wave = np.asarray(model.stylize(photo, style="wave"), dtype=np.int16)
    stars = np.asarray(model.stylize(photo, style="stars"), dtype=np.int16)
    scale = h / model.working_size(h, w, 1.0)[0]  # 3: the working size is 256 x 384
    margin = int(scale * (40 + 8))  # the receptive field at the working size, and the guided fit's windows
    left, right = slice(0, w // 2 - margin), slice(w // 2 + margin, w)
    assert np.abs(out[:, left] - wave[:, left]).max() <= 1
    assert np.abs(out[:, right] - stars[:, right]).max() <= 1
    assert np.abs(wave - stars).mean() > 20


@pytest.mark.skipif(not BUNDLED.with_suffix(".onnx").is_file(), reason="this build has no bundled ONNX twin")
def test_the_onnx_runtime_paints_at_the_same_working_size():
    from cin_style.inference.onnx_model import OnnxStyleModel

    model = StyleModel.pretrained(device="cpu", engine="torch")
    runtime = OnnxStyleModel.load(BUNDLED.with_suffix(".onnx"))
    photo = Image.fromarray((_photo(512, 768, seed=5)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    blend = "hokusai_great_wave=0.5,van_gogh_starry_night=0.5"
    for stroke in (1.0, 2.0):
        a = np.asarray(model.stylize(photo, blend, stroke=stroke), dtype=np.float64)
        b = np.asarray(runtime.stylize(photo, blend, stroke=stroke), dtype=np.float64)
        assert a.shape == b.shape == (512, 768, 3)
        assert 10 * np.log10(255**2 / np.square(a - b).mean()) > 35.0  # the engines shrink the photo alike, up to 8-bit rounding
    larger = np.asarray(model.stylize(photo, blend, stroke=2.0), dtype=np.float64)
    assert np.abs(larger - np.asarray(model.stylize(photo, blend), dtype=np.float64)).mean() > 3  # the factor changes the picture


def test_cli_refuses_bad_strokes_in_one_line_and_writes_nothing(tmp_path):
    model = StyleModel(_net(2), ["a", "b"], device="cpu")
    model_file = model.save(tmp_path / "m.safetensors")
    photo = tmp_path / "p.png"
    Image.fromarray((_photo(64, 96)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "out.png"
    for bad, words in (("0", "positive number"), ("-1", "positive number"), ("abc", "positive number"), ("64", "below the network's minimum")):
        run = subprocess.run([CLI, "stylize", "-m", str(model_file), str(photo), "-s", "a", "--stroke", bad, "-o", str(out)], capture_output=True, text=True)
        assert run.returncode == 2, run.stderr
        assert words in run.stderr and len(run.stderr.strip().splitlines()) == 1
        assert not out.exists()
    ok = subprocess.run([CLI, "stylize", "-m", str(model_file), str(photo), "-s", "a", "--stroke", "native", "-o", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr and out.is_file()


def test_the_apps_preview_is_the_full_resolution_image_shrunk():
    from cin_style.app import PREVIEW_SIZE, command_line, preview_side

    model = StyleModel(_net(2), ["a", "b"], device="cpu")  # no training record: stroke 1 paints at 256 px
    assert preview_side(model, (4000, 3000), 1.0) == PREVIEW_SIZE == 384  # the working size, 341 x 256, fits the preview
    assert preview_side(model, (4000, 3000), 0.5) == 683  # fine strokes are painted at their own working size, then shrunk
    assert preview_side(model, (300, 200), 0.5) == PREVIEW_SIZE  # a small photo: never enlarged (limit_longer_side)
    assert "--stroke 2" in command_line("a", stroke=2.0) and "--stroke" not in command_line("a")
