"""Beyond one style per photo: masks, the strength dial, colour preservation, added styles, steadier video."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style import StyleModel, StyleTransformer
from cin_style.inference.color import preserve_color, rgb_to_ycbcr, ycbcr_to_rgb
from cin_style.inference.masks import mask_weights
from cin_style.inference.regions import label_masks
from cin_style.io.modelfile import read_model, write_model
from cin_style.network.styles import IDENTITY, StyleError
from cin_style.inference.video import flicker, phase_averaged, stylize_frames

CLI = str(Path(sys.executable).parent / "cin-style")
NAMES = ["wave", "stars", "lion"]


def _net(num_styles: int = 3, seed: int = 0, width: float = 0.25) -> StyleTransformer:
    torch.manual_seed(seed)
    net = StyleTransformer(num_styles=num_styles, width=width)
    with torch.no_grad():
        for norm in net.norms():  # distinct styles, as different as trained ones or more
            norm.gamma.normal_(1.0, 0.4)
            norm.beta.normal_(0.0, 0.4)
    return net.eval()


@pytest.fixture
def model() -> StyleModel:
    return StyleModel(_net(), NAMES, device="cpu")


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    base = rng.random((8, 12, 3))
    return Image.fromarray((np.kron(base, np.ones((16, 16, 1))) * 255).astype(np.uint8))  # 128x192 blocks


# --- spatial masks -----------------------------------------------------------------------


def test_where_a_mask_is_one_the_output_is_the_single_style_output(model, photo):
    h, w = photo.height, photo.width
    mask = np.zeros((h, w), np.float32)
    mask[:, : w // 2] = 1.0
    out = np.asarray(model.stylize(photo, style="stars", masks={"wave": mask}), dtype=np.int16)
    wave = np.asarray(model.stylize(photo, style="wave"), dtype=np.int16)
    stars = np.asarray(model.stylize(photo, style="stars"), dtype=np.int16)
    margin = 40  # the receptive field reaches this far across the mask's edge
    left, right = slice(0, w // 2 - margin), slice(w // 2 + margin, w)
    assert np.abs(out[:, left] - wave[:, left]).max() <= 1  # 8-bit rounding only
    assert np.abs(out[:, right] - stars[:, right]).max() <= 1
    assert np.abs(wave - stars).mean() > 20  # the styles really differ: the test can fail


def test_per_pixel_weights_alone_would_not_be_exact(model, photo):
    """Why stylize_regions exists: the plain network with a mask map drifts from the single style."""
    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255
    maps = mask_weights({"wave": np.pad(np.ones((128, 96)), ((0, 0), (0, 96)))}, NAMES, (128, 192), base="stars")
    with torch.no_grad():
        plain = model.transformer(x, maps[None])
        wave = model.transformer(x, torch.tensor([[1.0, 0, 0]]))
    assert (plain[..., :, :56] - wave[..., :, :56]).abs().mean() > 0.01


def test_feathered_masks_blend_smoothly(model, photo):
    h, w = photo.height, photo.width
    mask = np.zeros((h, w), np.float32)
    mask[:, : w // 2] = 1.0
    weights = mask_weights({"wave": mask}, NAMES, (h, w), base="stars", feather=16)
    across = weights[0, h // 2].numpy()
    assert across[0] == pytest.approx(1.0) and across[-1] == pytest.approx(0.0)
    assert np.all(np.diff(across) <= 1e-6) and 0.3 < across[w // 2] < 0.7  # monotone ramp through the edge
    hard = np.asarray(model.stylize(photo, style="stars", masks={"wave": mask}), dtype=float)
    soft = np.asarray(model.stylize(photo, style="stars", masks={"wave": mask}, feather=16), dtype=float)
    edge = slice(w // 2 - 2, w // 2 + 2)
    jump = lambda img: np.abs(np.diff(img[:, edge], axis=1)).mean()  # noqa: E731
    assert jump(soft) < jump(hard)


def test_label_image_and_mask_errors(model, tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[:, 10:20] = 1
    labels[:, 20:] = 2
    Image.fromarray(labels, "L").save(tmp_path / "labels.png")
    masks = label_masks(tmp_path / "labels.png", {0: "wave", 2: "lion"})
    weights = mask_weights(masks, NAMES, (20, 30), base="stars")
    assert torch.equal(weights.argmax(0)[0], torch.tensor([0] * 10 + [1] * 10 + [2] * 10))
    with pytest.raises(StyleError, match="without a style"):
        mask_weights(masks, NAMES, (20, 30))
    with pytest.raises(ValueError, match="label 7 does not occur"):
        label_masks(tmp_path / "labels.png", {7: "wave"})
    with pytest.raises(StyleError, match="not a blend"):
        mask_weights({"wave=0.5,lion=0.5": labels}, NAMES, (20, 30))
    with pytest.raises(StyleError, match="unknown style 'sky'"):
        model.stylize(Image.new("RGB", (30, 20)), style="stars", masks={"sky": labels})


def test_cli_masks(tmp_path):
    model_file = write_model(tmp_path / "m.safetensors", _net(), NAMES)
    Image.new("RGB", (64, 48), (120, 90, 200)).save(tmp_path / "p.png")
    sky = np.zeros((48, 64), np.uint8)
    sky[:24] = 255
    Image.fromarray(sky).save(tmp_path / "sky.png")
    r = subprocess.run(
        [CLI, "stylize", "-m", model_file, tmp_path / "p.png", "--mask", f"wave={tmp_path / 'sky.png'}", "-s", "lion", "--feather", "4", "-o", tmp_path / "o.png"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "o.png").size == (64, 48)
    r = subprocess.run([CLI, "stylize", "-m", model_file, tmp_path / "p.png", "--mask", f"wave={tmp_path / 'sky.png'}", "-o", tmp_path / "x.png"], capture_output=True, text=True)
    assert r.returncode == 2 and "without a style" in r.stderr and "-s" in r.stderr and not (tmp_path / "x.png").exists()


# --- strength dial -------------------------------------------------------------------------


def test_strength_blends_towards_the_identity_row():
    model = StyleModel(_net(4), [*NAMES, IDENTITY], device="cpu")
    w = model.weights("stars", strength=0.25)
    assert torch.allclose(w, torch.tensor([0.0, 0.25, 0.0, 0.75]))
    assert torch.equal(model.weights("stars", strength=1.0), model.weights("stars"))
    assert torch.equal(model.weights("stars", strength=0.0), model.weights(IDENTITY))
    photo = Image.new("RGB", (32, 32), (10, 200, 30))
    assert np.array_equal(np.asarray(model.stylize(photo, style="stars", strength=0.0)), np.asarray(model.stylize(photo, style=IDENTITY)))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(StyleError, match="between 0 and 1"):
            model.weights("stars", strength=bad)


def test_strength_without_identity_row_names_the_remedy(model):
    with pytest.raises(StyleError, match="no 'identity' row.*add_styles"):
        model.stylize(Image.new("RGB", (16, 16)), style="stars", strength=0.5)


# --- colour preservation ---------------------------------------------------------------------


def test_ycbcr_round_trip_and_known_values():
    rgb = torch.rand(2, 3, 5, 7)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    white = rgb_to_ycbcr(torch.ones(3, 1, 1))[:, 0, 0]
    red = rgb_to_ycbcr(torch.tensor([1.0, 0, 0])[:, None, None])[:, 0, 0]
    assert torch.allclose(white, torch.tensor([1.0, 0.5, 0.5]), atol=1e-5)
    assert torch.allclose(red, torch.tensor([0.299, 0.5 - 0.168736, 1.0]), atol=1e-5)  # JPEG's BT.601


def test_preserve_color_keeps_the_photos_chroma(model, photo):
    x = torch.from_numpy(np.asarray(photo)).permute(2, 0, 1).float() / 255
    plain = torch.from_numpy(np.asarray(model.stylize(photo, style="lion"))).permute(2, 0, 1).float() / 255
    kept = torch.from_numpy(np.asarray(model.stylize(photo, style="lion", preserve_color=True))).permute(2, 0, 1).float() / 255
    chroma = lambda img: rgb_to_ycbcr(img)[1:]  # noqa: E731
    error_kept = (chroma(kept) - chroma(x)).abs().mean().item()
    error_plain = (chroma(plain) - chroma(x)).abs().mean().item()
    assert error_kept < 0.2 * error_plain and error_kept < 0.02
    # ... and the strokes (luminance) are the stylized image's.
    assert (rgb_to_ycbcr(kept)[0] - rgb_to_ycbcr(plain)[0]).abs().mean().item() < 0.02
    # The function itself, on tensors: chroma exactly the photo's wherever nothing clips.
    mixed = preserve_color(plain[None], x[None])[0]
    inside = ((mixed > 0.01) & (mixed < 0.99)).all(0)
    assert (chroma(mixed) - chroma(x))[:, inside].abs().max().item() < 1e-4


# --- steadier video ------------------------------------------------------------------------


def _pan(frames: int = 8) -> list[np.ndarray]:
    """A slowly panning still: one pixel per frame."""
    rng = np.random.default_rng(1)
    still = (np.kron(rng.random((20, 30, 3)), np.ones((4, 4, 1))) * 255).astype(np.uint8)  # 80x120
    return [still[8:72, t : t + 96].copy() for t in range(frames)]


def test_phase_averaging_is_steadier_on_a_pan(model):
    frames = _pan()
    w = model.weights("wave")
    plain = list(stylize_frames(model, frames, lambda i: w, batch_size=3))
    steady = list(stylize_frames(model, frames, lambda i: w, phases=16, batch_size=3))
    assert flicker(frames, steady) < 0.9 * flicker(frames, plain)
    # One phase is the plain network; the average of 16 is their mean, computed independently here.
    x = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        shifted = [model.transformer(torch.nn.functional.pad(x, (dx, 3 - dx, dy, 3 - dy), mode="reflect"), w[None])[..., dy : dy + 64, dx : dx + 96] for dy in range(4) for dx in range(4)]
    expected = (torch.stack(shifted).mean(0)[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
    assert np.abs(steady[0].astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="1, 4 or 16"):
        phase_averaged(model, x, w[None], 3)


def test_flicker_by_hand():
    a, b, c = (np.full((2, 2, 3), v, np.uint8) for v in (0, 10, 30))
    assert flicker([a, b, c], [a, c, c]) == pytest.approx(((30 + 0) / 2) / ((10 + 20) / 2))


# --- adding styles --------------------------------------------------------------------------


def test_with_new_styles_copies_everything_and_starts_new_rows_at_the_mean():
    net = _net(3)
    bigger = net.with_new_styles(2)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        for s in range(3):
            assert torch.equal(net(x, torch.eye(3)[s : s + 1]), bigger(x, torch.eye(5)[s : s + 1]))
    norm = bigger.norms()[4]
    assert torch.allclose(norm.gamma[3], net.norms()[4].gamma.mean(0)) and torch.equal(norm.gamma[3], norm.gamma[4])


def test_add_styles_keeps_old_styles_bit_identical(tmp_path, data_root, fast_overrides):
    base = write_model(tmp_path / "base.safetensors", _net(2), ["hokusai_great_wave", "van_gogh_starry_night"], training={"style_files": {"hokusai_great_wave": "hokusai_great_wave.jpg"}})
    run = tmp_path / "run"
    args = [
        "train", "experiment=add_styles", f"base_model={base}", "new_styles=[durer_lion,identity]", *fast_overrides,
        f"data_root={data_root}", f"hydra.run.dir={run}",
    ]  # fmt: skip
    done = subprocess.run([CLI, *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 style(s) and every convolution frozen" in done.stdout and "training 2 style(s): durer_lion, identity" in done.stdout
    before, after = read_model(base), read_model(run / "checkpoints" / "last.ckpt")
    assert after.styles == ["hokusai_great_wave", "van_gogh_starry_night", "durer_lion", IDENTITY]
    assert after.training["style_files"] == {"hokusai_great_wave": "hokusai_great_wave.jpg", "durer_lion": "durer_lion.jpg"}
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        for s in range(2):
            assert torch.equal(before.transformer(x, torch.eye(2)[[s, s]]), after.transformer(x, torch.eye(4)[[s, s]]))
        new = after.transformer.norms()[2]
        start = before.transformer.with_new_styles(2).norms()[2]
        assert not torch.equal(new.gamma[2:], start.gamma[2:]), "the new rows were trained"
    tables = before.transformer.style_tables()
    for k, v in before.transformer.state_dict().items():
        # Shared weights whole; the per-style tables' first two rows (the old styles).
        assert torch.equal(v, after.transformer.state_dict()[k][: len(v)] if k in tables else after.transformer.state_dict()[k]), k


def test_identity_row_is_trained_to_reproduce_the_photo(data_root):
    from cin_style.training.module import StyleTransferModule

    module = StyleTransferModule(style_names=["a", IDENTITY], width=0.25, loss={"vgg_weights": "random"})
    module.set_style_targets({"a": torch.rand(3, 32, 32)})
    x = torch.rand(2, 3, 32, 32)
    index = torch.tensor([1, 1])
    out = torch.rand(2, 3, 32, 32)
    terms = module.losses(out, x, index)
    pixel = ((out - x) ** 2).flatten(1).mean(1)
    plain = module.loss(out, x, index)
    assert torch.allclose(terms.content, plain.content + 1000.0 * pixel)
    assert torch.equal(terms.style, torch.zeros(2)), "the identity row has no style target"
