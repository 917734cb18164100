"""ONNX export and the PyTorch-free onnxruntime path (cin_style.io.export, cin_style.inference.onnx_model)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style.inference.style_model import StyleModel, pretrained_path
from cin_style.inference.color import preserve_color
from cin_style.io.modelfile import read_model, write_model
from cin_style.inference.onnx_model import METADATA_KEY, OnnxModelError, OnnxStyleModel

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CLI = str(Path(sys.executable).parent / "cin-style")
BLEND = "hokusai_great_wave=0.5,van_gogh_starry_night=0.3,durer_lion=0.2"


@pytest.fixture(scope="module")
def bundled() -> StyleModel:
    if not pretrained_path().is_file():
        pytest.skip("this build ships without the bundled model")
    return StyleModel.load(pretrained_path(), device="cpu", engine="torch")  # the reference: PyTorch, even beside a twin


@pytest.fixture(scope="module")
def exported(tmp_path_factory, bundled) -> Path:
    """The bundled model as an ONNX file, through the command line."""
    out = tmp_path_factory.mktemp("onnx") / "paintings.onnx"
    r = subprocess.run([CLI, "export", str(pretrained_path()), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {out}" in r.stdout
    return out


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = (np.asarray(i, dtype=np.float64) for i in (a, b))
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_the_file_is_one_graph_with_named_dynamic_inputs_and_the_model_record(exported, bundled):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model, full_check=True)
    assert not list(exported.parent.glob("*.data"))  # weights inside: one file
    assert [i.name for i in model.graph.input] == ["image", "style"] and [o.name for o in model.graph.output] == ["stylized"]
    dims = {i.name: i.type.tensor_type.shape.dim for i in model.graph.input}
    assert [bool(d.dim_param) for d in dims["image"]] == [True, False, True, True]  # B, 3, H, W
    assert dims["image"][1].dim_value == 3 and dims["style"][1].dim_value == len(bundled.styles)
    assert {i.name: i.type.tensor_type.elem_type for i in model.graph.input} == {"image": onnx.TensorProto.FLOAT, "style": onnx.TensorProto.FLOAT}
    record = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert record["styles"] == bundled.styles
    assert record["credits"] == bundled.credits and record["training"] == bundled.training
    assert record["architecture"] == read_model(pretrained_path()).transformer.config.to_dict()


@pytest.mark.parametrize("size", [(256, 256), (257, 383), (1024, 768)])
@pytest.mark.parametrize("style", ["hokusai_great_wave", BLEND])
def test_onnxruntime_paints_what_pytorch_paints(exported, bundled, data_root, size, style):
    photo = Image.open(data_root / "content" / "val" / "kodim05.jpg").convert("RGB").resize(size, Image.Resampling.LANCZOS)
    ours = OnnxStyleModel.load(exported).stylize(photo, style)
    reference = bundled.stylize(photo, style, tile=0)
    assert ours.size == photo.size
    assert _psnr(ours, reference) >= 45.0


def test_small_odd_images_strength_and_preserved_colour_match_too(exported, bundled):
    model = OnnxStyleModel.load(exported)
    rng = np.random.default_rng(0)
    for shape in [(5, 3), (7, 12), (9, 9)]:  # below the graph's 8-pixel minimum the runtime pads first
        photo = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
        assert _psnr(model.stylize(photo, 3), bundled.stylize(photo, 3)) >= 45.0
    photo = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    options = {"strength": 0.4, "preserve_color": True}
    assert _psnr(model.stylize(photo, "durer_lion", **options), bundled.stylize(photo, "durer_lion", **options)) >= 45.0
    array = model.stylize(np.asarray(photo), 0)  # uint8 arrays in, uint8 arrays out
    assert array.dtype == np.uint8 and array.shape == (40, 56, 3)


def test_colour_preservation_is_one_computation_for_tensors_and_arrays():
    torch.manual_seed(0)
    stylized, photo = torch.rand(2, 3, 6, 5), torch.rand(2, 3, 6, 5)
    by_torch = preserve_color(stylized, photo)
    by_numpy = preserve_color(stylized.numpy(), photo.numpy())
    assert isinstance(by_numpy, np.ndarray) and by_numpy.dtype == np.float32
    np.testing.assert_allclose(by_numpy, by_torch.numpy(), atol=1e-6)
    # Independently: the photo's chroma, the stylized image's luminance (BT.601 full range).
    y = lambda rgb: 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]  # noqa: E731
    cb = lambda rgb: -0.168736 * rgb[:, 0] - 0.331264 * rgb[:, 1] + 0.5 * rgb[:, 2]  # noqa: E731
    inside = (by_torch > 0.001).all(1) & (by_torch < 0.999).all(1)  # unclipped pixels
    assert torch.allclose(y(by_torch)[inside], y(stylized)[inside], atol=1e-5)
    assert torch.allclose(cb(by_torch)[inside], cb(photo)[inside], atol=1e-5)


# The command line without PyTorch: a guard in sys.modules makes `import torch` fail.
NO_TORCH = textwrap.dedent(
    """
    import sys
    for name in ("torch", "torchvision", "lightning", "safetensors.torch"):
        sys.modules[name] = None  # import fails with ImportError
    from cin_style.cli import main
    code = main(sys.argv[1:])
    assert "torch" not in {m.split(".")[0] for m, v in sys.modules.items() if v is not None}, "PyTorch was imported"
    sys.exit(code)
    """
)


def _without_torch(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True)


def test_stylize_runs_an_onnx_file_without_pytorch(exported, bundled, data_root, tmp_path):
    photo = data_root / "content" / "val" / "kodim23.jpg"
    out = tmp_path / "out.png"
    r = _without_torch("stylize", "-m", exported, photo, "-s", BLEND, "--size", "300", "-o", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _psnr(Image.open(out), bundled.stylize(photo, BLEND, size=300)) >= 45.0
    # Folder mode, with one broken file: the others are written, the broken one is named, exit 2.
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("kodim01.jpg", "kodim02.jpg"):
        (folder / name).write_bytes((data_root / "content" / "val" / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = _without_torch("stylize", "-m", exported, folder, "-s", "durer_lion", "--strength", "0.5", "--size", "64", "-o", tmp_path / "out")
    assert r.returncode == 2 and "wrote 2 of 3 images" in r.stdout, r.stderr[-3000:]
    assert "broken.jpg" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["kodim01.jpg", "kodim02.jpg"]
    r = _without_torch("styles", exported)
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith(bundled.styles[0])


def test_bad_input_through_the_onnx_path_is_one_line(exported, data_root, tmp_path):
    photo = data_root / "content" / "val" / "kodim23.jpg"
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX graph that is not a cin-style model
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])], [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cases = {
        "not a cin-style ONNX model": ["-m", foreign, photo, "-s", "0"],
        "not a readable ONNX file": ["-m", garbage, photo, "-s", "0"],
        "unknown style 'nope'; known styles: arcimboldo_spring": ["-m", exported, photo, "-s", "nope"],
        "broken.jpg": ["-m", exported, broken, "-s", "0"],
        "cannot paint regions": ["-m", exported, photo, "-s", "0", "--mask", f"durer_lion={photo}"],
    }
    for message, args in cases.items():
        r = _without_torch("stylize", *args, "-o", tmp_path / "x.jpg")
        assert r.returncode == 2, (message, r.stderr[-2000:])
        assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.jpg").exists()


def test_export_refuses_half_and_other_commands_refuse_onnx(tmp_path, exported, bundled):
    with pytest.raises(ValueError, match="float32"):
        write_model(tmp_path / "m.onnx", bundled.transformer, bundled.styles, half=True)
    r = subprocess.run([CLI, "blend", "-m", str(exported), "x.jpg", "-s", "a,b", "-o", str(tmp_path / "g.jpg")], capture_output=True, text=True)
    assert r.returncode == 2 and "give the .safetensors model to 'blend'" in r.stderr
    with pytest.raises(OnnxModelError, match="CPU"):
        OnnxStyleModel.load(exported, device="cuda")


@pytest.fixture(scope="module")
def twin_folder(tmp_path_factory, exported) -> Path:
    """A model file with its ONNX twin beside it (same name, .onnx), as the bundled model ships."""
    folder = tmp_path_factory.mktemp("twin")
    (folder / "paintings.safetensors").write_bytes(pretrained_path().read_bytes())
    (folder / "paintings.onnx").write_bytes(exported.read_bytes())
    return folder


def test_engine_onnx_runs_a_model_file_through_its_onnx_twin(twin_folder, bundled, data_root):
    photo = Image.open(data_root / "content" / "val" / "kodim05.jpg").convert("RGB").resize((200, 136))
    model = StyleModel.load(twin_folder / "paintings.safetensors", device="cpu", engine="onnx")
    assert model.engine.name == "onnx" and model.engine.runtime.styles == bundled.styles
    plain = StyleModel.load(twin_folder / "paintings.safetensors", device="cpu", engine="torch")
    assert plain.engine.name != "onnx"
    calls = []
    run = model.engine.runtime.run
    model.engine.runtime.run = lambda *a: calls.append(1) or run(*a)  # noqa: E731 - count the graph's calls
    out = model.stylize(photo, BLEND)
    assert calls and _psnr(out, plain.stylize(photo, BLEND)) >= 45.0
    model.stylize(photo, masks={"durer_lion": np.ones((136, 200), np.float32)})  # regions run PyTorch
    assert len(calls) == 1


def test_a_stale_or_missing_twin_is_never_used(twin_folder, tmp_path, monkeypatch):
    from cin_style.network import fastconv
    from cin_style.io.modelfile import ModelFileError

    assert StyleModel.load(twin_folder / "paintings.safetensors", device="cpu").engine.name != "onnx" or not fastconv.available()
    monkeypatch.setattr(fastconv, "native_bf16", lambda: False)  # a CPU without native bfloat16,
    monkeypatch.setattr(fastconv, "available", lambda: False)  # and a PyTorch without NNPACK: auto turns to the twin
    assert StyleModel.load(twin_folder / "paintings.safetensors", device="cpu").engine.name == "onnx"

    other = read_model(pretrained_path())
    with torch.no_grad():
        other.transformer.output.conv.weight.mul_(1.01)  # other weights, same styles
    write_model(tmp_path / "paintings.safetensors", other.transformer, other.styles, training=other.training, credits=other.credits)
    (tmp_path / "paintings.onnx").write_bytes((twin_folder / "paintings.onnx").read_bytes())
    with pytest.warns(UserWarning, match="exported from other weights"):
        model = StyleModel.load(tmp_path / "paintings.safetensors", device="cpu")
    assert model.engine.name != "onnx"
    with pytest.raises(ModelFileError, match="export it again"):
        StyleModel.load(tmp_path / "paintings.safetensors", device="cpu", engine="onnx")
    (tmp_path / "paintings.onnx").unlink()
    with pytest.raises(ModelFileError, match="no ONNX graph beside"):
        StyleModel.load(tmp_path / "paintings.safetensors", device="cpu", engine="onnx")
    assert StyleModel.load(tmp_path / "paintings.safetensors", device="cpu").engine.name != "onnx"  # auto: quietly PyTorch


def test_the_readme_snippet_runs_with_onnxruntime_and_pillow_only(exported, bundled, data_root, tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = readme.split("From plain Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    snippet = snippet.replace('"paintings.onnx"', repr(str(exported))).replace('"photo.jpg"', repr(str(data_root / "content" / "val" / "kodim23.jpg")))
    snippet = snippet.replace('"out.jpg"', repr(str(tmp_path / "out.png")))
    guard = 'import sys\nfor name in ("torch", "cin_style"):\n    sys.modules[name] = None\n'
    r = subprocess.run([sys.executable, "-c", guard + snippet], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    photo = data_root / "content" / "val" / "kodim23.jpg"
    assert _psnr(Image.open(tmp_path / "out.png"), bundled.stylize(photo, {"hokusai_great_wave": 0.7, "durer_lion": 0.3}, stroke="native", tile=0)) >= 45.0  # the bare graph: every pixel
