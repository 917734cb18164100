"""Whatever cameras and downloads produce: each kind of image file is handled on purpose."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style import StyleTransformer
from cin_style.io.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from cin_style.io.modelfile import write_model

CLI = str(Path(sys.executable).parent / "cin-style")


def _png(path: Path, width: int, height: int, *, bit_depth: int, color_type: int, rows: bytes) -> Path:
    """A PNG written by hand, so that its header can say anything (16-bit RGB, or 60000x60000)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def _exif_rotated(path: Path) -> Path:
    im = Image.new("RGB", (30, 20), (200, 10, 10))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    im.save(path, exif=exif)
    return path


def _animated_gif(path: Path) -> Path:
    frames = [Image.new("RGB", (24, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def _truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# name -> (writer, expected (width, height), expected RGB of pixel (0, 0) or None)
GOOD = {
    "cmyk.jpg": (lambda p: Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(p, quality=100), (40, 30), (255, 0, 0)),
    "rgb16.png": (
        lambda p: _png(p, 5, 4, bit_depth=16, color_type=2, rows=(b"\x00" + struct.pack(">HHH", 65535, 0, 32896) * 5) * 4),
        (5, 4),
        (255, 0, 128),
    ),
    "gray16.png": (lambda p: Image.fromarray(np.full((6, 7), 65535, np.uint16)).save(p), (7, 6), (255, 255, 255)),
    "gray.png": (lambda p: Image.new("L", (9, 8), 77).save(p), (9, 8), (77, 77, 77)),
    "rgba.png": (lambda p: Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(p), (10, 10), (255, 255, 255)),
    "palette.png": (lambda p: Image.new("RGB", (12, 10), (0, 0, 255)).convert("P").save(p), (12, 10), (0, 0, 255)),
    "onebit.png": (lambda p: Image.new("1", (13, 11), 1).save(p), (13, 11), (255, 255, 255)),
    "rotated.jpg": (_exif_rotated, (20, 30), None),
    "tiny.png": (lambda p: Image.new("RGB", (1, 1), (1, 2, 3)).save(p), (1, 1), (1, 2, 3)),
    "strip.png": (lambda p: Image.new("RGB", (4000, 16), (9, 9, 9)).save(p), (4000, 16), (9, 9, 9)),
    "animated.gif": (_animated_gif, (24, 16), (255, 0, 0)),
    "photo.webp": (lambda p: Image.new("RGB", (16, 12), (0, 255, 0)).save(p, lossless=True), (16, 12), (0, 255, 0)),
    "scan.tif": (lambda p: Image.new("RGB", (14, 10), (10, 20, 30)).save(p), (14, 10), (10, 20, 30)),
}

# name -> (writer, words the one-line error must contain)
BAD = {
    "truncated.jpg": (_truncated_jpeg, "truncated"),
    "empty.jpg": (lambda p: p.write_bytes(b""), "empty file"),
    "notes.jpg": (lambda p: p.write_text("these are not pixels\n"), "not an image"),
    "bomb.png": (lambda p: _png(p, 60000, 60000, bit_depth=8, color_type=2, rows=b"\x00" * 100), "--max-pixels"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name, (write, *_) in {**GOOD, **BAD}.items():
        write(folder / name)
    return folder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return write_model(tmp_path_factory.mktemp("model") / "m.safetensors", StyleTransformer(num_styles=2, width=0.125), ["a", "b"])


@pytest.mark.parametrize("name", GOOD)
def test_good_files_load_as_rgb_with_the_right_pixels(images, name):
    _, size, pixel = GOOD[name]
    with pytest.warns(UserWarning, match="animated.*first frame") if name == "animated.gif" else _no_warning():
        im = load_image(images / name)
    assert im.mode == "RGB" and im.size == size
    if pixel is not None:
        assert np.abs(np.asarray(im)[0, 0].astype(int) - pixel).max() <= 2, np.asarray(im)[0, 0]


@pytest.mark.parametrize("name", BAD)
def test_bad_files_are_one_clear_error(images, name):
    with pytest.raises(ImageLoadError) as info:
        load_image(images / name)
    message = str(info.value)
    assert message.startswith(str(images / name)) and BAD[name][1] in message and "\n" not in message


def test_bomb_is_refused_from_its_header_and_the_limit_is_adjustable(images, tmp_path):
    assert (images / "bomb.png").stat().st_size < 1000 and 60000 * 60000 > DEFAULT_MAX_PIXELS
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match="10,000 pixels, more than the limit of 5,000"):
        load_image(tmp_path / "small.png", max_pixels=5000)
    assert load_image(tmp_path / "small.png", max_pixels=10000).size == (100, 100)
    # Pillow's own global limit is left as it was.
    assert Image.MAX_IMAGE_PIXELS is not None


def _cli(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)


def test_folder_mode_processes_every_usable_file_and_lists_the_rest(images, model_file, tmp_path):
    out = tmp_path / "out"
    r = _cli("stylize", "-m", model_file, images, "-s", "a", "-o", out, "--device", "cpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for name, (_, size, _) in GOOD.items():
        assert Image.open(out / name).size == size, name
    for name, (_, words) in BAD.items():
        assert not (out / name).exists()
        assert any(str(images / name) in line and words in line for line in r.stderr.splitlines()), (name, r.stderr)
    assert f"wrote {len(GOOD)} of {len(GOOD) + len(BAD)} images" in r.stdout
    assert "animated image with 3 frames; using the first frame" in r.stderr


@pytest.mark.parametrize("name", ["bomb.png", "truncated.jpg", "notes.jpg"])
def test_single_bad_file_is_one_line_exit_2_and_no_output(images, model_file, tmp_path, name):
    out = tmp_path / "out.png"
    r = _cli("stylize", "-m", model_file, images / name, "-s", "a", "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1 and str(images / name) in r.stderr


def test_max_pixels_option(model_file, tmp_path):
    Image.new("RGB", (100, 100), "gray").save(tmp_path / "p.png")
    r = _cli("stylize", "-m", model_file, tmp_path / "p.png", "-s", "a", "-o", tmp_path / "o.png", "--max-pixels", "5000")
    assert r.returncode == 2 and "--max-pixels" in r.stderr and not (tmp_path / "o.png").exists()
    r = _cli("stylize", "-m", model_file, tmp_path / "p.png", "-s", "a", "-o", tmp_path / "o.webp", "--max-pixels", "10000")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "o.webp").format == "WEBP"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--size", "0"], "--size: must be at least 1"),
        (["--size", "-5"], "--size: must be at least 1"),
        (["--size", "big"], "not a whole number"),
        (["--quality", "101"], "between 1 and 100"),
        (["--max-pixels", "0"], "--max-pixels: must be at least 1"),
        (["--tile", "8"], "at least 32"),
        (["-s", "a=-1"], "negative"),
        (["-s", "a=nan"], "not finite"),
        (["-s", "a=0,b=0"], "all zero"),
        (["-s", "a,a"], "twice"),
        (["-s", "nope"], "unknown style 'nope'; known styles: a, b"),
    ],
)
def test_bad_arguments_are_one_line_before_any_work(model_file, tmp_path, args, words):
    Image.new("RGB", (20, 20)).save(tmp_path / "p.png")
    full = ["stylize", "-m", model_file, tmp_path / "p.png", "-o", tmp_path / "o.png", *(["-s", "a"] if "-s" not in args else []), *args]
    r = _cli(*full)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()


def test_unwritable_or_impossible_output_is_an_error_before_work(model_file, tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "p.png")
    # A folder cannot be created inside a file, whoever runs the test (root ignores permissions).
    r = _cli("stylize", "-m", model_file, tmp_path / "p.png", "-s", "a", "-o", tmp_path / "p.png" / "out.png")
    assert r.returncode == 2 and "cannot write to" in r.stderr and "Traceback" not in r.stderr
    r = _cli("stylize", "-m", model_file, tmp_path / "p.png", tmp_path / "p.png", "-s", "a", "-o", tmp_path / "p.png" / "outs")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = _cli("blend", "-m", model_file, tmp_path / "p.png", "-s", "a,b", "-o", tmp_path)
    assert r.returncode == 2 and "is a folder" in r.stderr
    # An existing folder as the output of one photo receives it under its own name (like cp).
    (tmp_path / "into").mkdir()
    r = _cli("stylize", "-m", model_file, tmp_path / "p.png", "-s", "a", "-o", tmp_path / "into")
    assert r.returncode == 0 and (tmp_path / "into" / "p.png").is_file()
    # A missing output folder is created.
    r = _cli("stylize", "-m", model_file, tmp_path / "p.png", "-s", "a", "-o", tmp_path / "new" / "deeper" / "o.png")
    assert r.returncode == 0 and (tmp_path / "new" / "deeper" / "o.png").is_file()


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
