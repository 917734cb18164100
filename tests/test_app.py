"""The Gradio studio (cin_style.app): its functions, its /stylize endpoint through gradio_client,
and the page itself in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style.inference.style_model import StyleModel
from cin_style.app import command_line, paint, region_mask, style_blend
from cin_style.cli import main as cli_main
from cin_style.network.transformer import StyleTransformer
from cin_style.io.modelfile import write_model
from cin_style.network.styles import Blend, StyleError

gr = pytest.importorskip("gradio")

CLI = str(Path(sys.executable).parent / "cin-style")
NAMES = ["hokusai_great_wave", "durer_lion", "van_gogh_starry_night", "identity"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small 4-row network whose rows paint clearly different pictures (random gamma/beta), or
    the model file named by $CIN_STYLE_APP_MODEL (the README's screenshot shows the bundled model:
    CIN_STYLE_APP_MODEL=cin_style/models/paintings.safetensors CIN_STYLE_APP_SCREENSHOT=docs/app.png
    python -m pytest tests/test_app.py -k browser)."""
    if os.environ.get("CIN_STYLE_APP_MODEL"):
        return Path(os.environ["CIN_STYLE_APP_MODEL"]).resolve()
    torch.manual_seed(0)
    net = StyleTransformer(num_styles=len(NAMES), width=0.25)
    with torch.no_grad():
        for norm in net.norms():
            norm.gamma.normal_(1.0, 0.5)
            norm.beta.normal_(0.0, 0.5)
        net.photo.gain[-1] = 1.0  # the identity row lets the photo through
    return write_model(tmp_path_factory.mktemp("app") / "m.safetensors", net, NAMES)


@pytest.fixture(scope="module")
def model(model_file) -> StyleModel:
    return StyleModel.load(model_file, device="cpu")


def _pixels(image) -> np.ndarray:
    return np.asarray(Image.open(image) if isinstance(image, (str, Path, io.BytesIO)) else image, dtype=np.float64)


def test_the_picks_are_parsed_once_into_a_blend_whose_string_is_the_command_line_form(model):
    blend = style_blend(model, ["hokusai_great_wave", "durer_lion", None, None], [0.7, 0.3, 1.0, 0.0])
    assert isinstance(blend, Blend) and str(blend) == "hokusai_great_wave=0.7,durer_lion=0.3"
    assert model.blend(blend) == pytest.approx(model.blend({"hokusai_great_wave": 0.7, "durer_lion": 0.3}))
    assert str(style_blend(model, ["durer_lion", "durer_lion", "van_gogh_starry_night", None], [0.25, 0.25, 0, 1])) == "durer_lion=0.5"  # picked twice: added up
    with pytest.raises(StyleError, match="at least one style"):
        style_blend(model, [None, "durer_lion"], [1.0, 0.0])


def test_region_mask_is_the_painted_layers_alpha():
    layer = np.zeros((20, 40, 4), np.uint8)
    layer[:, :10, 3] = 255  # the left quarter painted
    mask = region_mask({"background": None, "layers": [layer], "composite": None}, (40, 20))
    assert mask.shape == (20, 40) and mask[:, :10].min() == 1.0 and mask[:, 12:].max() == 0.0
    assert region_mask({"layers": [np.zeros((20, 40, 4), np.uint8)]}, (40, 20)) is None
    assert region_mask(None, (40, 20)) is None


def test_paint_is_stylize_and_its_command_line_makes_the_same_image(model, model_file, data_root, tmp_path):
    photo = Image.open(data_root / "content" / "val" / "kodim23.jpg").convert("RGB")
    style = style_blend(model, ["hokusai_great_wave", "durer_lion"], [0.6, 0.4])
    shown = paint(model, photo, style, strength=0.7, preserve_color=True, size=96)
    assert max(shown.size) == 96
    assert np.array_equal(_pixels(shown), _pixels(model.stylize(photo, {"hokusai_great_wave": 0.6, "durer_lion": 0.4}, strength=0.7, preserve_color=True, size=96)))
    # The command shown beside the result, run for real on the same photo, gives the same picture.
    line = command_line(style, model=str(model_file), strength=0.7, preserve_color=True)
    words = shlex.split(line)
    assert words[:2] == ["cin-style", "stylize"]
    words = [str(data_root / "content" / "val" / "kodim23.jpg") if w == "photo.jpg" else str(tmp_path / "out.png") if w == "out.jpg" else w for w in words]
    assert cli_main([*words[1:], "--size", "96"]) == 0
    assert np.array_equal(_pixels(tmp_path / "out.png"), _pixels(shown))
    # A painted region in another style: the painted half looks like that style, the rest like the blend.
    region = np.zeros((photo.height, photo.width), np.float32)
    region[:, : photo.width // 2] = 1.0
    both = _pixels(paint(model, photo, style, region_style="van_gogh_starry_night", region=region, feather=0, size=96))
    blend = _pixels(paint(model, photo, style, size=96))
    starry = _pixels(paint(model, photo, "van_gogh_starry_night", size=96))
    left, right = slice(0, 40), slice(56, 96)
    distance = lambda a, b, part: np.abs(a[:, part] - b[:, part]).mean()  # noqa: E731
    assert distance(both, starry, left) < distance(both, blend, left)
    assert distance(both, blend, right) < distance(both, starry, right)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(model_file):
    """`cin-style app` in a subprocess, as a user starts it."""
    port = _free_port()
    proc = subprocess.Popen([CLI, "app", "-m", str(model_file), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited: {proc.stdout.read()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("the app did not serve its page within 3 minutes")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_the_stylize_endpoint_through_gradio_client(served, model, data_root, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(served, verbose=False)
    assert "/stylize" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    photo = data_root / "content" / "val" / "kodim23.jpg"
    out = client.predict(handle_file(str(photo)), "hokusai_great_wave=0.5,durer_lion=0.5", 0.8, False, api_name="/stylize")
    expected = model.stylize(photo, {"hokusai_great_wave": 0.5, "durer_lion": 0.5}, strength=0.8)
    assert np.array_equal(_pixels(out), _pixels(expected))  # PNG: the very pixels
    with pytest.raises(Exception, match="unknown style 'nope'"):
        client.predict(handle_file(str(photo)), "nope", 1.0, False, api_name="/stylize")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 broken")
    with pytest.raises(Exception):
        client.predict(handle_file(str(broken)), "durer_lion", 1.0, False, api_name="/stylize")
    out = client.predict(handle_file(str(photo)), "durer_lion", 1.0, False, api_name="/stylize")  # still serving
    assert np.array_equal(_pixels(out), _pixels(model.stylize(photo, "durer_lion")))


def _shown(page) -> np.ndarray:
    """The preview image as the browser shows it (fetched from the src it displays)."""
    src = page.locator("#preview img").first.get_attribute("src")
    body = page.request.get(src).body() if not src.startswith("data:") else __import__("base64").b64decode(src.split(",", 1)[1])
    return _pixels(io.BytesIO(body))


def _wait_for_new_preview(page, old_src: str | None, step: str, timeout_s: float = 240) -> str:
    # Generous: under a loaded CI machine one preview has taken over a minute (0.4 s when quiet).
    deadline = time.time() + timeout_s
    src = None
    while time.time() < deadline:
        img = page.locator("#preview img")
        if img.count():
            src = img.first.get_attribute("src")
            if src and src != old_src:
                return src
        page.wait_for_timeout(250)
    errors = page.locator(".toast-body, .error").all_inner_texts()
    raise AssertionError(f"the preview did not change within {timeout_s:.0f} s after {step} (shown: {src!r}; errors on the page: {errors})")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium); .ci/run installs it")
def test_in_a_real_browser(served, model, data_root, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = data_root / "content" / "val" / "kodim23.jpg"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served)
        page.locator("#photo input[type=file]").set_input_files(str(photo))
        first_src = _wait_for_new_preview(page, None, "the upload")
        first = _shown(page)
        start = next(s for s in model.styles if s != "identity")  # the page starts with the first painting style
        expected = _pixels(model.stylize(photo, start, size=384))
        assert first.shape == expected.shape and np.abs(first - expected).mean() < 1.0  # the first style, painted (not the photo)
        assert np.abs(first - _pixels(Image.open(photo).convert("RGB").resize(first.shape[1::-1]))).mean() > 5
        # A second style, then its weight slider moved: the preview changes.
        # The option is clicked when the list shows it: pressing Enter right after typing picked
        # nothing on a loaded machine (the list had not filtered yet), and with no second style the
        # slider changes nothing.
        page.locator("#style2 input").click()
        page.locator("#style2 input").fill("durer_lion")
        page.get_by_role("option", name="durer_lion").first.click(timeout=90_000)
        page.locator("#weight2 input[type=range]").fill("0.6")
        _wait_for_new_preview(page, first_src, "moving the second weight slider")
        # The preview and the command line come from the same event: once the command shows the
        # slider's value, the preview beside it is that blend's.
        page.locator("#command").get_by_text("durer_lion=0.6", exact=False).first.wait_for(timeout=90_000)
        blended = _shown(page)
        assert np.abs(blended - first).mean() > 1.0
        expected = _pixels(model.stylize(photo, {start: 1.0, "durer_lion": 0.6}, size=384))
        assert np.abs(blended - expected).mean() < 1.0
        screenshot = Path(os.environ.get("CIN_STYLE_APP_SCREENSHOT", tmp_path / "app.png"))
        page.screenshot(path=str(screenshot), full_page=False)
        assert Image.open(screenshot).size == (1280, 900)
        # Larger strokes: the preview is repainted and the command line says so.
        page.locator("#stroke input[type=range]").fill("2")
        page.locator("#command").get_by_text("--stroke 2", exact=False).first.wait_for(timeout=90_000)
        larger = _shown(page)
        expected = _pixels(model.stylize(photo, {start: 1.0, "durer_lion": 0.6}, size=384, stroke=2))
        assert np.abs(larger - blended).mean() > 1.0 and np.abs(larger - expected).mean() < 1.0
        # A corrupt upload: a message in the page, and the app goes on serving.
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
        page.locator("#photo input[type=file]").set_input_files(str(broken))
        page.get_by_text("cannot read image", exact=False).first.wait_for(timeout=60_000)
        browser.close()


def test_app_errors_are_one_line(data_root, model_file):
    from cin_style.app import _open_photo
    from cin_style.io.images import ImageLoadError

    with pytest.raises(ImageLoadError, match="pixels"):  # a huge upload is refused before it is decoded
        _open_photo({"path": str(data_root / "content" / "val" / "kodim23.jpg")}, 1000)
    with pytest.raises(StyleError, match="upload, paste or take a photo"):
        _open_photo(None, 1000)
    guard = "import sys; sys.modules['gradio'] = None; from cin_style.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", guard, "app", "-m", str(model_file)], capture_output=True, text=True)
    assert r.returncode == 2 and 'pip install "cin-style[app]"' in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_new_paintings_preview_is_the_nearest_blend_as_the_pages_picks(model):
    from cin_style.app import MAX_BLEND, nearest_picks

    painting = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "paintings" / "van_gogh_the_night_cafe.jpg"
    names, weights = nearest_picks(model, painting)
    assert len(names) == len(weights) == MAX_BLEND
    blend = model.nearest_blend(painting)
    assert {n: w for n, w in zip(names, weights) if n} == pytest.approx({k: round(v, 2) for k, v in blend.items()})
    assert "identity" not in names and abs(sum(weights) - 1) < 0.02 and weights == sorted(weights, reverse=True)
