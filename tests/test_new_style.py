"""Any painting as a new style: the fitted row, what stays bit-identical, the cache, files and bad input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style import StyleModel
from cin_style.inference.new_style import FitSettings, bundled_photos, fit_row, fitting_crops
from cin_style.io.modelfile import write_model
from cin_style.network.styles import StyleError
from _nets import random_style_net

CLI = str(Path(sys.executable).parent / "cin-style")
FAST = FitSettings(steps=12, batch=2, crop=64, photo_size=96, lr=0.05)
PAINTING = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "paintings" / "van_gogh_the_night_cafe.jpg"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Fitted rows go to this test's own cache (VGG-16's converted weights are found where they are)."""
    from cin_style.losses import vgg

    weights = vgg.project_cache_dir()
    monkeypatch.setenv("CIN_STYLE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    for f in weights.glob("vgg16*.safetensors"):
        (tmp_path / "cache" / f.name).symlink_to(f)


@pytest.fixture
def small_model(tmp_path) -> Path:
    net = random_style_net(3, width=0.25, seed=1)
    return write_model(tmp_path / "base.safetensors", net, ["wave", "stars", "identity"], training={"style_size": 128, "image_size": 128})


def test_adding_a_style_keeps_every_old_row_and_convolution_bit_identical(small_model):
    model = StyleModel.load(small_model, device="cpu", engine="torch")
    before = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    name = model.add_style(PAINTING, settings=FAST, progress=False, artist="Vincent van Gogh")
    assert name == "van_gogh_the_night_cafe" and model.styles == ["wave", "stars", "identity", name]
    after = model.transformer.state_dict()
    tables = set(model.transformer.style_tables())
    for key, old in before.items():
        if key in tables:
            assert torch.equal(after[key][:3], old) and after[key].shape[0] == 4, key
        else:
            assert torch.equal(after[key], old), key
    assert model.credit(name) == {"style": name, "title": PAINTING.name, "artist": "Vincent van Gogh"}
    assert model.training["style_files"][name] == PAINTING.name
    # It blends like any row: half and half is the mean of the two rows' gamma/beta.
    x = torch.rand(1, 3, 32, 32)
    half = model.stylize_tensor(x, model.weights({name: 0.5, "wave": 0.5}), stroke="native")
    assert half.shape == x.shape and not torch.equal(half, model.stylize_tensor(x, model.weights("wave"), stroke="native"))


def test_the_fitted_row_lowers_the_loss_it_was_fitted_on(small_model):
    model = StyleModel.load(small_model, device="cpu", engine="torch")
    loss = model.training_loss()
    grams = model._painting_grams(PAINTING)
    start, _ = model._nearest(grams)
    held = fitting_crops(bundled_photos(), FitSettings(crop=64, photo_size=96), generator=torch.Generator().manual_seed(123), count=4)

    def measured(row_weights=None, row=None) -> float:
        from cin_style import StyleTransformer

        single = StyleTransformer(**model.transformer.config.to_dict() | {"num_styles": 1})
        state = model.transformer.state_dict()
        tables = model.transformer.style_tables()
        with torch.no_grad():
            for key, value in single.state_dict().items():
                value.copy_(row[key][None] if row is not None and key in tables else (start @ state[key])[None] if key in tables else state[key])
            return float(loss(single(held, torch.ones(4, 1)), held, style_grams=grams).total.mean())

    crops = fitting_crops(bundled_photos(), FAST, generator=torch.Generator().manual_seed(0))
    row, history = fit_row(model.transformer, start, grams, loss, crops, FitSettings(steps=30, batch=2, crop=64, photo_size=96, lr=0.05))
    assert len(history) == 30
    # On crops the fit never saw: at least 15 % below where it started (measured: about 40 %).
    assert measured(row=row) < 0.85 * measured()


def test_the_cache_returns_the_same_row_without_fitting_again(small_model, monkeypatch):
    first = StyleModel.load(small_model, device="cpu", engine="torch")
    first.add_style(PAINTING, settings=FAST, progress=False)
    import cin_style.inference.new_style as new_style

    monkeypatch.setattr(new_style, "fit_row", lambda *a, **k: pytest.fail("fitted again instead of reading the cache"))
    second = StyleModel.load(small_model, device="cpu", engine="torch")
    second.add_style(PAINTING, settings=FAST, progress=False)
    for key, table in first.transformer.style_tables().items():
        assert torch.equal(table, second.transformer.style_tables()[key]), key
    # Other settings are another entry: they fit again.
    with pytest.raises(pytest.fail.Exception, match="fitted again"):
        StyleModel.load(small_model, device="cpu", engine="torch").add_style(PAINTING, settings=FitSettings(steps=3, batch=2, crop=64, photo_size=96), progress=False)


def test_a_freshly_loaded_model_previews_from_its_cached_signature(small_model, monkeypatch):
    """The rows' Gram matrices on the preview's crops (the model's signature) are computed once per
    model and kept in the user cache: a second load previews without painting every row again,
    and gives the same blend; another network is another entry."""
    import cin_style.inference.new_style as new_style

    loaded = StyleModel.load(small_model, device="cpu", engine="torch")
    first = loaded.nearest_blend(PAINTING)
    assert loaded._signature[1].shape == (2, 3, 128, 128)  # the preview's small crops, not the fit's 256 px ones
    assert len(list((Path(os.environ["CIN_STYLE_CACHE"]) / "signatures").glob("*.safetensors"))) == 1
    monkeypatch.setattr(new_style, "row_grams", lambda *a, **k: pytest.fail("painted every row again instead of reading the cache"))
    assert StyleModel.load(small_model, device="cpu", engine="torch").nearest_blend(PAINTING) == first
    other = write_model(small_model.with_name("other.safetensors"), random_style_net(3, width=0.25, seed=2), ["wave", "stars", "identity"], training={"style_size": 128, "image_size": 128})
    with pytest.raises(pytest.fail.Exception, match="painted every row again"):
        StyleModel.load(other, device="cpu", engine="torch").nearest_blend(PAINTING)


def test_prepare_preview_loads_what_the_first_preview_needs(small_model, monkeypatch):
    import cin_style.losses.perceptual as perceptual
    import cin_style.inference.new_style as new_style

    model = StyleModel.load(small_model, device="cpu", engine="torch")
    model.prepare_preview()
    monkeypatch.setattr(new_style, "row_grams", lambda *a, **k: pytest.fail("painted every row at the first preview"))
    monkeypatch.setattr(perceptual, "PerceptualLoss", lambda *a, **k: pytest.fail("loaded VGG-16 at the first preview"))
    assert sum(model.nearest_blend(PAINTING).values()) == pytest.approx(1.0, abs=1e-3)


def test_the_new_row_survives_save_load_and_onnx_export(small_model, tmp_path):
    model = StyleModel.load(small_model, device="cpu", engine="torch")
    name = model.add_style(PAINTING, name="cafe", settings=FAST, progress=False)
    saved = model.save(tmp_path / "mine.safetensors")
    again = StyleModel.load(saved, device="cpu", engine="torch")
    assert again.styles == model.styles and again.credit("cafe")["title"] == PAINTING.name
    x = torch.rand(1, 3, 40, 48)
    w = again.weights(name)
    assert torch.equal(again.stylize_tensor(x, w, stroke="native"), model.stylize_tensor(x, w, stroke="native"))
    from cin_style.inference.onnx_model import OnnxStyleModel

    onnx = OnnxStyleModel.load(again.save(tmp_path / "mine.onnx"))
    photo = Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8))
    a = np.asarray(onnx.stylize(photo, "cafe", stroke="native"), dtype=np.int16)
    b = np.asarray(again.stylize(photo, "cafe", stroke="native"), dtype=np.int16)
    assert np.abs(a - b).max() <= 2


def test_names_are_checked_and_replace_refits_in_place(small_model):
    model = StyleModel.load(small_model, device="cpu", engine="torch")
    with pytest.raises(StyleError, match="already has a style 'wave'"):
        model.add_style(PAINTING, name="wave", settings=FAST, progress=False)
    with pytest.raises(StyleError, match="cannot name a style"):
        model.add_style(PAINTING, name="identity", settings=FAST, progress=False)
    with pytest.raises(ValueError, match="give the new style a name"):
        model.add_style(Image.open(PAINTING), settings=FAST, progress=False)
    wave = model.transformer.style_tables()["encoder.0.norm.gamma"][0].clone()
    model.add_style(PAINTING, name="wave", replace=True, settings=FAST, progress=False)
    assert model.styles == ["wave", "stars", "identity"]
    assert not torch.equal(model.transformer.style_tables()["encoder.0.norm.gamma"][0], wave)


def _odd_paintings(folder: Path) -> dict[str, Path]:
    base = Image.open(PAINTING).convert("RGB").resize((96, 80))
    files = {"cmyk.jpg": base.convert("CMYK"), "palette.png": base.convert("P"), "gray16.png": base.convert("L").point(lambda v: v * 256, "I").convert("I;16")}
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    files["transparent.png"] = rgba
    out = {}
    for name, image in files.items():
        image.save(folder / name)
        out[name] = folder / name
    return out


def test_cmyk_16_bit_palette_and_transparent_paintings_are_taken_as_photos_are(small_model, tmp_path):
    model = StyleModel.load(small_model, device="cpu", engine="torch")
    for name, path in _odd_paintings(tmp_path).items():
        added = model.add_style(path, settings=FitSettings(steps=1, batch=1, crop=64, photo_size=64), progress=False)
        assert added == Path(name).stem
    assert model.styles[-4:] == ["cmyk", "palette", "gray16", "transparent"]


def cli(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=600)


def test_add_style_from_the_command_line_then_stylize_with_it(small_model, tmp_path):
    out = tmp_path / "mine.safetensors"
    done = cli("add-style", PAINTING, "-m", small_model, "--name", "cafe", "--steps", "3", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "nearest blend of the model's styles" in done.stdout and f"next: cin-style stylize -m {out} photo.jpg -s cafe -o out.jpg" in done.stdout
    assert StyleModel.load(out, device="cpu").styles == ["wave", "stars", "identity", "cafe"]
    photo = tmp_path / "photo.png"
    Image.open(bundled_photos()[0]).resize((64, 64)).save(photo)
    done = cli("stylize", photo, "-m", small_model, "--style-image", PAINTING, "--fit-steps", "3", "-o", tmp_path / "out.png")
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out.png").size == (64, 64)
    assert done.stdout.splitlines()[-1].startswith(f"next: cin-style add-style {PAINTING} -o van_gogh_the_night_cafe.safetensors")


def test_bad_input_is_one_line_exit_2_no_output_and_the_model_untouched(small_model, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(PAINTING.read_bytes()[:2000])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    tiny = tmp_path / "tiny.png"
    Image.open(PAINTING).resize((60, 40)).save(tiny)
    onnx = tmp_path / "base.onnx"
    onnx.write_bytes(b"not really onnx")
    base_bytes = small_model.read_bytes()
    cases = [
        ([truncated, "-m", small_model], "truncated"),
        ([empty, "-m", small_model], "empty"),
        ([text, "-m", small_model], "not an image"),
        ([tiny, "-m", small_model], "at least 64 px"),
        ([PAINTING, "-m", small_model, "--name", "stars"], "already has a style 'stars'"),
        ([PAINTING, "-m", onnx], ".safetensors"),
    ]
    for args, message in cases:
        out = tmp_path / "out.safetensors"
        done = cli("add-style", *args, "--steps", "2", "-o", out)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, (message, done.stderr)
        assert not out.exists()
    assert small_model.read_bytes() == base_bytes


def test_the_fit_precision_is_checked_and_resolved():
    from cin_style.network.fastconv import native_bf16

    cpu = torch.device("cpu")
    assert not FitSettings().bf16(cpu)  # the measured default: float32
    assert FitSettings(precision="bf16-mixed").bf16(cpu) and not FitSettings(precision="32-true").bf16(cpu)
    assert FitSettings(precision="auto").bf16(cpu) == native_bf16()
    with pytest.raises(ValueError, match="precision"):
        FitSettings(precision="fp8")
