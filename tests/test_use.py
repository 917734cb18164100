"""Using trained networks: model files, style selection, the Python API and the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style import StyleModel, StyleTransformer
from cin_style.io.modelfile import FORMAT_VERSION, ModelFileError, read_model, write_model
from cin_style.io.sheets import interpolation_weights
from cin_style.network.styles import StyleError, style_weights
from _nets import logits_by_hand, random_style_net

CLI = str(Path(sys.executable).parent / "cin-style")
STYLES = ["wave", "stars", "lion"]


def _random_net(num_styles: int = 3, seed: int = 0) -> StyleTransformer:
    return random_style_net(num_styles, seed=seed)


@pytest.fixture
def model_file(tmp_path) -> Path:
    return write_model(tmp_path / "m.safetensors", _random_net(), STYLES, training={"steps": 0})


@pytest.fixture
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    arr = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path


def cli(*args, cwd=None):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd)


# --- model files -------------------------------------------------------------------------


def test_safetensors_round_trip_is_bit_identical(model_file):
    net = _random_net()
    model = StyleModel.load(model_file, device="cpu", engine="torch")  # exact float32: the file's weights, not an engine's rounding
    assert model.styles == STYLES and model.training == {"steps": 0}
    x = torch.rand(2, 3, 29, 31)
    for s in range(3):
        w = torch.nn.functional.one_hot(torch.tensor([s, s]), 3).float()
        assert torch.equal(model.stylize_tensor(x, w), net(x, w).detach())


def test_export_from_lightning_checkpoint_is_bit_identical(tmp_path):
    from cin_style.training.module import StyleTransferModule

    torch.manual_seed(0)
    module = StyleTransferModule(style_names=STYLES, width=0.25, loss={"vgg_weights": "random"})
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 7}
    torch.save(ckpt, tmp_path / "last.ckpt")
    done = cli("export", tmp_path / "last.ckpt", "-o", tmp_path / "m.safetensors")
    assert done.returncode == 0, done.stderr
    loaded = read_model(tmp_path / "m.safetensors")
    assert loaded.styles == STYLES and loaded.training["steps"] == 7
    x = torch.rand(1, 3, 40, 24)
    w = torch.tensor([[0.2, 0.3, 0.5]])
    with torch.no_grad():
        assert torch.equal(loaded.transformer(x, w), module.transformer.eval()(x, w))
    assert cli("styles", tmp_path / "m.safetensors").stdout.split() == STYLES


def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "hyper_parameters": {"style_names": ["a"]}, "x": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(ModelFileError, match="refused"):
        read_model(tmp_path / "evil.ckpt")
    done = cli("styles", tmp_path / "evil.ckpt")
    assert done.returncode == 2 and "refused" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


def test_broken_model_files_are_clear_errors(tmp_path, model_file):
    data = model_file.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.safetensors"):
        read_model(tmp_path / "cut.safetensors")
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(model_file), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(model_file))
    save_file(tensors, str(tmp_path / "newer.safetensors"), metadata={**meta, "format_version": str(FORMAT_VERSION + 1)})
    with pytest.raises(ModelFileError, match="newer"):
        read_model(tmp_path / "newer.safetensors")
    save_file(tensors, str(tmp_path / "lie.safetensors"), metadata={**meta, "styles": json.dumps(["a", "b"]), "architecture": json.dumps({"num_styles": 2, "width": 0.25})})
    with pytest.raises(ModelFileError, match="do not match"):
        read_model(tmp_path / "lie.safetensors")
    with pytest.raises(ModelFileError, match="no such"):
        read_model(tmp_path / "missing.safetensors")


def test_version_1_files_read_without_the_photo_skip(tmp_path, model_file):
    """Files written before the photo skip existed (format 1, no ``photo.gain``) read with gains of 0:
    exactly the network they stored. A current file that lacks the tensor is broken."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(model_file), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(model_file))
    del tensors["photo.gain"]
    save_file(tensors, str(tmp_path / "v1.safetensors"), metadata={**meta, "format_version": "1"})
    old = read_model(tmp_path / "v1.safetensors").transformer
    assert torch.equal(old.photo.gain, torch.zeros(3, 3))
    # The old network's output, by hand: the last layer's logits through a plain sigmoid.
    x, w = torch.rand(1, 3, 24, 24), torch.tensor([[0.0, 1.0, 0.0]])
    with torch.no_grad():
        assert torch.allclose(old(x, w), torch.sigmoid(logits_by_hand(old, x, w)), atol=1e-6)
    save_file(tensors, str(tmp_path / "v2.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="missing 1 tensor.*photo.gain"):
        read_model(tmp_path / "v2.safetensors")


def test_half_precision_export_is_small_and_close(tmp_path, model_file):
    half = StyleModel.load(model_file, device="cpu").save(tmp_path / "h.safetensors", half=True)
    assert half.stat().st_size < 0.6 * model_file.stat().st_size
    x = torch.rand(1, 3, 32, 32)
    w = torch.tensor([0.0, 1.0, 0.0])
    a = StyleModel.load(model_file, device="cpu", engine="torch").stylize_tensor(x, w)  # the files' difference alone
    b = StyleModel.load(half, device="cpu", engine="torch").stylize_tensor(x, w)
    assert (a - b).abs().max() < 0.02


# --- style weights -----------------------------------------------------------------------


def test_style_weights_normalize_and_select():
    assert style_weights("stars", STYLES).tolist() == [0.0, 1.0, 0.0]
    assert style_weights(2, STYLES).tolist() == [0.0, 0.0, 1.0]
    assert style_weights({"wave": 3, "lion": 1}, STYLES).tolist() == [0.75, 0.0, 0.25]
    assert style_weights("stars=0.7,wave=0.7", STYLES).tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert style_weights("stars,lion", STYLES).tolist() == pytest.approx([0.0, 0.5, 0.5])


@pytest.mark.parametrize(
    "bad, message",
    [("nope", "unknown style 'nope'"), ({"wave": -1}, "negative"), ({"wave": float("nan")}, "not finite"),
     ({"wave": 0, "lion": 0}, "all zero"), ("wave=1,wave=2", "twice"), ({"wave": 1, 0: 1}, "twice"), (7, "out of range"),
     ("wave=abc", "not a number"), ({}, "no style")],
)  # fmt: skip
def test_style_weight_errors_list_known_names(bad, message):
    with pytest.raises(StyleError, match=message) as err:
        style_weights(bad, STYLES)
    if "unknown" in message or "zero" in message:
        assert "wave, stars, lion" in str(err.value)


def test_a_style_is_parsed_once_and_the_blend_flows_down_unparsed(model_file, photo, monkeypatch):
    """parse_style turns the user's string into a Blend; stylize then paints with it without
    parsing anything again (the parser is made to fail), and paints what the string paints."""
    import cin_style.network.styles as styles

    model = StyleModel.load(model_file, device="cpu", engine="torch")
    blend = model.parse_style("stars=0.7,wave=0.3")
    assert blend.weights == pytest.approx((0.3, 0.7, 0.0)) and str(blend) == "stars=0.7,wave=0.3"
    expected = np.asarray(model.stylize(photo, "stars=0.7,wave=0.3", strength=1.0))

    def no_parsing(text):
        raise AssertionError(f"parsed again: {text!r}")

    monkeypatch.setattr(styles, "parse_style_string", no_parsing)
    assert np.array_equal(np.asarray(model.stylize(photo, blend)), expected)
    with pytest.raises(StyleError, match="made for other styles"):
        styles.blend_weights(blend, ["wave", "stars", "lion", "new"])


def test_blend_endpoints_equal_pure_styles(model_file, photo):
    model = StyleModel.load(model_file, device="cpu")
    pure = np.asarray(model.stylize(photo, style="lion"))
    assert np.array_equal(np.asarray(model.stylize(photo, style={"lion": 1.0, "wave": 0.0})), pure)
    grid = interpolation_weights(4, 3)
    assert grid[0][0] == [1, 0, 0, 0] and grid[0][-1] == [0, 1, 0, 0] and grid[-1][0] == [0, 0, 1, 0] and grid[-1][-1] == [0, 0, 0, 1]
    assert all(sum(cell) == pytest.approx(1) for row in grid for cell in row)
    tri = interpolation_weights(3, 4)
    assert [sum(c is not None for c in row) for row in tri] == [1, 2, 3, 4]
    assert tri[0][0] == [1, 0, 0] and tri[3][0] == [0, 1, 0] and tri[3][3] == [0, 0, 1]
    assert interpolation_weights(2, 3) == [[[1, 0], [0.5, 0.5], [0, 1]]]


# --- images --------------------------------------------------------------------------------


def test_stylize_keeps_kind_and_size(model_file, photo):
    model = StyleModel.load(model_file, device="cpu")
    pil = Image.open(photo)
    out = model.stylize(pil, style="wave")
    assert isinstance(out, Image.Image) and out.size == pil.size
    arr = model.stylize(np.asarray(pil), style="wave")
    assert isinstance(arr, np.ndarray) and arr.shape == (37, 53, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr, np.asarray(out))
    t = model.stylize(torch.rand(3, 21, 17), style=1)
    assert isinstance(t, torch.Tensor) and t.shape == (3, 21, 17)
    batch = model.stylize([pil, pil.rotate(90, expand=True)], style={"wave": 0.5, "stars": 0.5})
    assert [im.size for im in batch] == [(53, 37), (37, 53)]
    assert model.stylize(photo, style="wave", size=20).size == (20, 14)


def test_exif_orientation_rgba_and_grayscale(model_file, tmp_path):
    model = StyleModel.load(model_file, device="cpu")
    base = Image.fromarray((np.random.default_rng(1).random((20, 30, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    base.save(tmp_path / "rot.jpg", exif=exif)
    assert model.stylize(tmp_path / "rot.jpg", style="wave").size == (20, 30)
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited on white
    rgba.save(tmp_path / "clear.png")
    white = np.asarray(model.stylize(Image.new("RGB", (30, 20), "white"), style="wave"))
    assert np.array_equal(np.asarray(model.stylize(tmp_path / "clear.png", style="wave")), white)
    base.convert("L").save(tmp_path / "gray.png")
    assert model.stylize(tmp_path / "gray.png", style="wave").size == (30, 20)


def test_cli_single_folder_sheet_and_blend(model_file, photo, tmp_path):
    done = cli("stylize", "-m", model_file, photo, "-s", "stars=0.7,wave=0.3", "-o", tmp_path / "out.jpg")
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out.jpg").size == (53, 37) and Image.open(tmp_path / "out.jpg").format == "JPEG"

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.open(photo).save(folder / "a.png")
    Image.open(photo).save(folder / "sub" / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    done = cli("stylize", "-m", model_file, folder, "-s", "lion", "-o", tmp_path / "out")
    assert done.returncode == 2
    assert "broken.jpg" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "sub" / "b.jpg").is_file()
    assert not (tmp_path / "out" / "broken.jpg").exists()
    assert not list((tmp_path / "out").rglob(".*.tmp*"))

    assert cli("stylize", "-m", model_file, photo, "--all-styles", "-o", tmp_path / "sheet.png").returncode == 0
    assert Image.open(tmp_path / "sheet.png").width > 3 * 53
    done = cli("blend", "-m", model_file, photo, "-s", "wave,stars,lion", "--steps", "3", "-o", tmp_path / "tri.png")
    assert done.returncode == 0, done.stderr
    done = cli("blend", "-m", model_file, photo, "-s", "wave,stars", "--steps", "4", "--size", "32", "-o", tmp_path / "strip.png")
    strip = Image.open(tmp_path / "strip.png")
    assert strip.width > 4 * strip.height - 40


def test_cli_errors_are_one_line_before_work(model_file, photo, tmp_path):
    for args, message in [
        (["-s", "nope"], "unknown style 'nope'; known styles: wave, stars, lion"),
        (["-s", "wave=-1"], "negative"),
        (["-s", "wave", "--size", "0"], "at least 1"),
        ([], "give a style"),
    ]:
        done = cli("stylize", "-m", model_file, photo, *args, "-o", tmp_path / "o.jpg")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "o.jpg").exists()
    done = cli("stylize", "-m", model_file, photo, "-s", "wave", "-o", tmp_path / "o.xyz")
    assert done.returncode == 2 and "suffix" in done.stderr


def test_a_folder_with_a_bad_request_fails_before_any_file_is_read(model_file, tmp_path, monkeypatch):
    """stylize_files checks the whole request first (check_request): a bad style, stroke or
    refinement is one error, not one failure line per photo after reading each of them."""
    import cin_style.inference.stylizer as stylizer
    from cin_style.inference.strokes import StrokeError

    model = StyleModel.load(model_file, device="cpu", engine="torch")
    read = []
    monkeypatch.setattr(stylizer, "load_image", lambda *a, **k: read.append(a) or Image.new("RGB", (16, 16)))
    pairs = [(tmp_path / f"{i}.png", tmp_path / "out" / f"{i}.png") for i in range(3)]
    for style, options, error in [
        ("nope", {}, StyleError),
        ("wave", {"stroke": -1.0}, StrokeError),
        ("wave", {"refine": 3}, ValueError),  # the refinement needs the paintings' folder
        (None, {"sheet": True, "refine": 3}, StyleError),  # a contact sheet paints every style
    ]:
        with pytest.raises(error):
            model.stylize_files(pairs, style, **options)
        with pytest.raises(error):
            model.stylize_file(*pairs[0], style, **options)
    assert read == []
    assert model.stylize_files(pairs, "wave") == [] and len(read) == 3


# --- video ---------------------------------------------------------------------------------


def test_video_round_trip_keeps_frames_size_and_rate(model_file, tmp_path):
    from fractions import Fraction

    from cin_style.inference.video import read_video_info, write_video

    rng = np.random.default_rng(0)
    base = (rng.random((40, 200, 3)) * 255).astype(np.uint8)
    frames = [np.ascontiguousarray(base[:, i * 4 : i * 4 + 64]) for i in range(12)]  # a slow pan
    write_video(frames, tmp_path / "clip.mp4", rate=12)
    assert read_video_info(tmp_path / "clip.mp4") == (64, 40, Fraction(12), 12)
    done = cli("video", "-m", model_file, tmp_path / "clip.mp4", "-s", "wave", "--to-style", "stars", "-o", tmp_path / "out.mp4", "--batch-size", "5")
    assert done.returncode == 0, done.stderr
    assert "frames/s" in done.stdout
    assert read_video_info(tmp_path / "out.mp4") == (64, 40, Fraction(12), 12)


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path, model_file):
    from cin_style.io.files import atomic_path

    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "model.safetensors"]
    StyleModel.load(model_file, device="cpu").save(target)
    assert read_model(target).styles == STYLES


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    from cin_style.io.files import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "new.txt") as tmp:
            tmp.write_text("x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        os.chmod(tmp_path / "new.txt", 0o640)
        with atomic_path(tmp_path / "new.txt") as tmp:
            tmp.write_text("y")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode
    finally:
        os.umask(old)


def test_safetensors_whose_header_length_looks_like_a_pickle_still_load(tmp_path):
    """A safetensors file starts with its header length; 0x80 there once sent it to the pickle reader."""
    for extra in range(256):
        path = write_model(tmp_path / "m.bin", _random_net(), STYLES, training={"pad": "x" * extra})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no header length starting with 0x80 found")
    assert read_model(path).styles == STYLES  # suffix .bin: found by sniffing, not by name


def test_stylize_loads_neither_lightning_nor_torchvision(model_file, photo, tmp_path):
    """Inference needs neither: importing them costs about 0.25 GB of memory, which a 4K frame on a
    CPU cannot spare (the command stays under 1.5 GB there)."""
    out = tmp_path / "out.jpg"
    code = (
        "import sys; from cin_style.cli import main; "
        f"rc = main(['stylize', '-m', {str(model_file)!r}, {str(photo)!r}, '-s', 'wave', '-o', {str(out)!r}]); "
        "print(rc, sorted(m for m in ('lightning', 'torchvision', 'hydra') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    assert out.is_file()
