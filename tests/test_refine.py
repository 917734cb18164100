"""Refining a still: a few steps of the optimization method from the network's painting."""

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
from cin_style.io.images import to_tensor
from cin_style.network.styles import StyleError

CLI = str(Path(sys.executable).parent / "cin-style")
BUNDLED = Path(__file__).resolve().parents[1] / "cin_style" / "models" / "paintings.safetensors"
pytestmark = pytest.mark.skipif(not BUNDLED.is_file(), reason="this build has no bundled model")

STYLE = "hokusai_great_wave"


def test_the_refined_loss_is_lower_than_the_networks(data_root):
    model = StyleModel.pretrained(device="cpu", engine="torch")
    photo = Image.open(data_root / "content" / "val" / "kodim05.jpg").convert("RGB").resize((192, 128), Image.Resampling.LANCZOS)
    loss = model_loss(model)
    painting = find_paintings(data_root / "styles", [STYLE], model.training.get("style_files"))[STYLE]
    grams = loss.style_grams(load_style_image(painting, 256)[None])  # independently of the refiner's own targets

    def total(image: Image.Image) -> float:
        x, p = to_tensor(image)[None], to_tensor(photo)[None]
        with torch.no_grad():
            return float(loss(x, p, style_grams=grams).total)

    network = model.stylize(photo, STYLE)
    refined = model.stylize(photo, STYLE, refine=8, style_images=data_root / "styles")
    assert refined.size == photo.size
    assert total(refined) < 0.85 * total(network)  # 8 L-BFGS steps take off at least 15 % of the network's loss
    # At a larger size the refinement runs at the working size, then comes to full size with the rest.
    large = photo.resize((768, 512), Image.Resampling.LANCZOS)
    assert model.stylize(large, STYLE, refine=2, style_images=data_root / "styles").size == (768, 512)


def test_refining_needs_one_style_the_paintings_and_pytorch(data_root):
    model = StyleModel.pretrained(device="cpu", engine="torch")
    photo = Image.new("RGB", (32, 32), (90, 120, 200))
    with pytest.raises(ValueError, match="folder of paintings"):
        model.stylize(photo, STYLE, refine=3)
    with pytest.raises(StyleError, match="one style"):
        model.stylize(photo, f"{STYLE}=0.5,durer_lion=0.5", refine=3, style_images=data_root / "styles")
    with pytest.raises(ValueError, match="whole number"):
        model.stylize(photo, STYLE, refine=2.5, style_images=data_root / "styles")
    with pytest.raises(FileNotFoundError, match="no painting"):
        model.stylize(photo, STYLE, refine=3, style_images=data_root / "content" / "val")


def test_cli_refuses_bad_refinements_in_one_line(data_root, tmp_path):
    photo = data_root / "content" / "val" / "kodim05.jpg"
    out = tmp_path / "out.jpg"
    styles = ["--style-images", str(data_root / "styles")]
    cases = [
        (["--refine", "0", *styles], "at least 1"),
        (["--refine", "-3", *styles], "at least 1"),
        (["--refine", "2.5", *styles], "not a whole number"),
        (["--refine", "3"], "--style-images"),
        (["--refine", "3", "-m", str(BUNDLED.with_suffix(".onnx")), *styles], "PyTorch"),
        (["--refine", "3", "--all-styles", *styles], "contact sheet"),
    ]
    for extra, words in cases:
        run = subprocess.run([CLI, "stylize", str(photo), "-s", STYLE, *extra, "-o", str(out)], capture_output=True, text=True)
        assert run.returncode == 2, (extra, run.stderr)
        assert words in run.stderr and len(run.stderr.strip().splitlines()) == 1, (extra, run.stderr)
        assert not out.exists()
    ok = subprocess.run([CLI, "stylize", str(photo), "-s", STYLE, "--refine", "2", *styles, "--size", "128", "-o", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert Image.open(out).size == (128, 85) and np.asarray(Image.open(out)).std() > 10


def test_the_app_refines_what_the_command_line_refines(data_root):
    from cin_style.app import command_line, paint

    model = StyleModel.pretrained(device="cpu", engine="torch")
    photo = Image.open(data_root / "content" / "val" / "kodim05.jpg").convert("RGB").resize((96, 64), Image.Resampling.LANCZOS)
    refined = paint(model, photo, STYLE, refine=2, style_images=data_root / "styles")
    same = model.stylize(photo, STYLE, refine=2, style_images=data_root / "styles")
    assert np.array_equal(np.asarray(refined), np.asarray(same))
    assert np.abs(np.asarray(refined, dtype=float) - np.asarray(paint(model, photo, STYLE), dtype=float)).mean() > 0.5
    line = command_line(STYLE, refine=30, style_images="paintings")
    assert "--refine 30 --style-images paintings" in line and line.endswith("-o out.jpg")
