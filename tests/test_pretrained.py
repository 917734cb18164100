"""The default model: StyleModel.pretrained(), -m optional, credits, --demo (with a tiny stand-in model)."""

import csv
import os
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from PIL import Image

from cin_style import StyleModel, StyleTransformer
from cin_style.inference.style_model import PRETRAINED_ENV, demo_photo_path
from cin_style.io.modelfile import ModelFileError, read_model, write_model

CLI = str(Path(sys.executable).parent / "cin-style")
BUNDLED = Path(str(files("cin_style") / "models" / "paintings.safetensors"))
STYLES = ["hokusai_great_wave", "durer_lion"]


def _cli(*args, env=None):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "MANIFEST.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "title", "artist_or_author", "year", "width", "height", "source", "license"])
        w.writerow(["styles/hokusai_great_wave.jpg", "The Great Wave off Kanagawa", "Katsushika Hokusai", "1831", 1, 1, "x", "public domain (artwork); file GPL"])
        w.writerow(["styles/durer_lion.jpg", "Lion", "Albrecht Dürer", "1494", 1, 1, "y", "public domain (artwork)"])
    return path


@pytest.fixture
def stand_in(tmp_path, manifest) -> Path:
    """A tiny model exported the way the real one is: half precision, credits from the manifest."""
    torch.manual_seed(0)
    ckpt = write_model(tmp_path / "raw.safetensors", StyleTransformer(num_styles=2, width=0.125), STYLES, training={"style_files": {s: f"{s}.jpg" for s in STYLES}})
    out = tmp_path / "paintings.safetensors"
    r = _cli("export", ckpt, "-o", out, "--half", "--credits", manifest)
    assert r.returncode == 0, r.stderr
    return out


def test_export_records_credits_from_the_manifest(stand_in):
    loaded = read_model(stand_in)
    assert [c["style"] for c in loaded.credits] == STYLES
    assert loaded.credits[1] == {"style": "durer_lion", "title": "Lion", "artist": "Albrecht Dürer", "year": "1494", "license": "public domain (artwork)", "source": "y"}


def test_export_credits_must_cover_every_style(tmp_path, manifest):
    model = write_model(tmp_path / "m.safetensors", StyleTransformer(num_styles=2, width=0.125), ["durer_lion", "unknown_painting"])
    r = _cli("export", model, "-o", tmp_path / "o.safetensors", "--credits", manifest)
    assert r.returncode == 2 and "no entry for style(s) unknown_painting" in r.stderr and not (tmp_path / "o.safetensors").exists()


def test_pretrained_and_cli_defaults_use_the_configured_model(stand_in, monkeypatch, tmp_path):
    monkeypatch.setenv(PRETRAINED_ENV, str(stand_in))
    model = StyleModel.pretrained(device="cpu")
    assert model.styles == STYLES and model.credits[0]["title"] == "The Great Wave off Kanagawa"
    env = {PRETRAINED_ENV: str(stand_in)}
    r = _cli("styles", env=env)
    assert r.returncode == 0
    assert r.stdout.splitlines() == [
        "hokusai_great_wave\tThe Great Wave off Kanagawa (Katsushika Hokusai, 1831); public domain (artwork)",
        "durer_lion\tLion (Albrecht Dürer, 1494); public domain (artwork)",
    ]
    start = time.perf_counter()
    r = _cli("stylize", "--demo", "-o", tmp_path / "demo.jpg", "--device", "cpu", env=env)
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - start < 60  # a process start, the model and 3 small images on a 2-core CPU
    sheet = Image.open(tmp_path / "demo.jpg")
    demo = Image.open(demo_photo_path())
    assert sheet.width > 2 * demo.width  # the photo and every style, side by side
    r = _cli("stylize", "--demo", "-s", "durer_lion", "-o", tmp_path / "lion.png", env=env)
    assert r.returncode == 0 and Image.open(tmp_path / "lion.png").size == demo.size


def test_without_a_default_model_the_error_says_what_to_do(tmp_path, monkeypatch):
    missing = tmp_path / "none.safetensors"
    monkeypatch.setenv(PRETRAINED_ENV, str(missing))
    with pytest.raises(ModelFileError, match="give a model with -m"):
        StyleModel.pretrained()
    r = _cli("stylize", "--demo", "-o", tmp_path / "x.jpg", env={PRETRAINED_ENV: str(missing)})
    assert r.returncode == 2 and "-m/--model" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_demo_photo_ships_with_the_package():
    photo = Image.open(demo_photo_path())
    assert photo.size == (512, 341) and photo.mode == "RGB"


@pytest.mark.skipif(not BUNDLED.is_file(), reason="this build has no bundled model (see docs/pretrained.md)")
def test_the_bundled_model_loads_has_credits_and_is_fast_on_cpu():
    model = StyleModel.pretrained(device="cpu")
    assert StyleModel.pretrained(device="cpu", engine="onnx").engine.name == "onnx"  # its ONNX twin ships beside it, from these very weights
    assert len(model.styles) >= 10 and [c["style"] for c in model.credits] == model.styles
    assert all(c["title"] and c["artist"] and c["license"] for c in model.credits if c["style"] != "identity")
    photo = Image.open(demo_photo_path())
    start = time.perf_counter()
    out = model.stylize(photo, style=model.styles[0])
    assert time.perf_counter() - start < 5.0 and out.size == photo.size


#: Floors for the bundled model on the first 6 Kodak photos at 256 px: the gates themselves
#: (measured on the shipped run 11: identification 0.950 on these 6, 114 of 120, 0.981 on all 24;
#: the closest right call wins by 2.6 % of its distance, far beyond float32's differences between
#: CPUs; identity row 148 dB median on these 6 and on all 24, exact in 8 bits).
IDENTIFICATION_FLOOR = 0.95
IDENTITY_PSNR_FLOOR = 30.0
#: The gate for a frame painted along the image's edge (``cin_style.quality.evaluate.border_step``, 8-bit
#: levels): run 11 paints none (at most +6.2 on all 24 photos). Run 10 painted Benzaiten +23,
#: the Librarian +13 and Starry Night +10.5 on these 6 (their files' thin light edges, trimmed
#: since), run 9 Starry Night -32 and Bazille -22 (their dark frames); both fail here.
BORDER_GATE = 8.0


@pytest.mark.skipif(not BUNDLED.is_file(), reason="this build has no bundled model (see docs/pretrained.md)")
def test_the_bundled_model_keeps_its_documented_quality(data_root):
    import statistics

    from cin_style.io.paintings import load_center_crops, load_style_image
    from cin_style.io.images import find_images
    from cin_style.io.paintings import recorded_style_size
    from cin_style.quality.evaluate import evaluate_model, evaluated_styles, identity_psnr, model_loss
    from cin_style.quality.evaluate import identification as identification_of

    model = StyleModel.pretrained(device="cpu", engine="torch")  # the gates are measured in float32 (as `cin-style evaluate`)
    photos = load_center_crops(find_images(data_root / "content" / "val")[:6], 256)
    files = model.training["style_files"]
    size = recorded_style_size(model.training)
    paintings = {name: load_style_image(data_root / "styles" / files[name], size) for name in evaluated_styles(model.styles)}
    rows = evaluate_model(model, photos, paintings, loss=model_loss(model))
    identification = identification_of(rows)
    print(f"identification {identification['accuracy']:.3f}")
    assert identification["accuracy"] >= IDENTIFICATION_FLOOR
    psnr = identity_psnr(model, photos)
    print(f"identity median PSNR {statistics.median(psnr):.2f} dB")
    assert statistics.median(psnr) >= IDENTITY_PSNR_FLOOR
    borders = {name: row["border"] for name, row in rows.items()}
    print("border " + ", ".join(f"{n} {b:+.1f}" for n, b in borders.items() if abs(b) >= BORDER_GATE))
    too_much = {n: b for n, b in borders.items() if abs(b) >= BORDER_GATE}
    assert not too_much, f"frames painted along the edge: {too_much}"
