"""``cin-style app``: the style-blending studio in the browser (Gradio).

What a CIN network can do that a one-style network cannot, live: blend up to four styles with
sliders, dial the strength, keep the photo's colours, paint a region in another style. The
preview is made at a small size on every change, without a button (painted at the stroke's
working size, so that it is the full-resolution image shrunk); the full-resolution result
(exact tiles above the memory limit, as ``cin-style stylize``) is made on request, for download,
with the equivalent command line beside it. The named endpoint ``/stylize`` serves
``gradio_client``.

The functions above :func:`build_app` are plain Python (tested without a browser); the page
only wires them to components. Errors a user can fix are shown in the page (``gr.Error``) and
the app keeps serving.
"""

from __future__ import annotations

import functools
import os
import shlex
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cin_style.io.images import DEFAULT_MAX_PIXELS, ImageLoadError, limit_longer_side, load_image
from cin_style.network.styles import IDENTITY, Blend, StyleError, StyleSpec
from cin_style.inference.stylizer import Stylizer

__all__ = ["PREVIEW_SIZE", "MAX_BLEND", "style_blend", "region_mask", "paint", "preview_side", "command_line", "nearest_picks", "build_app", "launch"]

#: Longer side of the live preview: about a quarter of a second per change on a 2-core CPU.
PREVIEW_SIZE = 384
#: Longer side of webcam frames in stream mode.
STREAM_SIZE = 256
#: Styles one blend can mix in the page.
MAX_BLEND = 4
#: Optimization steps of the "refine" checkbox (cin-style stylize --refine).
REFINE_STEPS = 30


def style_blend(model: Stylizer, names: Sequence[str | None], weights: Sequence[float]) -> Blend:
    """The page's picks and weight sliders as the model's :class:`~cin_style.network.styles.Blend`,
    parsed here once (the weights stay numbers all the way down; ``str()`` of it is the command
    line's form); empty picks and zero weights are left out, a style picked twice adds up.
    Raises StyleError when nothing is left."""
    total: dict[str, float] = {}
    for name, weight in zip(names, weights):
        if name and weight and weight > 0:
            total[name] = total.get(name, 0.0) + float(weight)
    if not total:
        raise StyleError("pick at least one style with a weight above 0")
    return model.parse_style(total)


def region_mask(editor: Any, size: tuple[int, int]) -> np.ndarray | None:
    """The painted region of a Gradio image editor's value (its layers' alpha), as a float mask
    (H, W) at ``size`` (width, height); None when nothing is painted."""
    layers = (editor or {}).get("layers") or []
    alpha = None
    for layer in layers:
        if layer is None:
            continue
        if isinstance(layer, (dict, str)):  # unprocessed: the layer's file
            with Image.open(_file(layer)) as im:
                layer = im.copy()
        layer = layer if isinstance(layer, Image.Image) else Image.fromarray(np.asarray(layer))
        a = np.asarray(layer.convert("RGBA").getchannel("A").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255
        alpha = a if alpha is None else np.maximum(alpha, a)
    return alpha if alpha is not None and alpha.max() > 0 else None


def paint(
    model: Stylizer,
    photo: Image.Image,
    style: StyleSpec,
    *,
    strength: float = 1.0,
    preserve_color: bool = False,
    region_style: str | None = None,
    region: np.ndarray | None = None,
    feather: float = 8.0,
    stroke: float = 1.0,
    refine: int = 0,
    style_images: str | os.PathLike | None = None,
    size: int | None = None,
) -> Image.Image:
    """The photo painted in ``style`` (a :class:`~cin_style.network.styles.Blend`, or anything
    :meth:`Stylizer.stylize` takes: the API endpoint's string) at ``stroke``, shrunk to ``size``
    first when given; with a painted ``region`` (a mask at the photo's size) that region in
    ``region_style``; ``refine`` optimization steps after the network (paintings in ``style_images``)."""
    photo = limit_longer_side(photo.convert("RGB"), size)
    masks = None
    if region is not None and region_style:
        mask = Image.fromarray((region * 255).astype(np.uint8), "L").resize(photo.size, Image.Resampling.BILINEAR)
        masks = {region_style: mask}
    extra = {"refine": refine, "style_images": style_images} if refine else {}
    return model.stylize(photo, style, strength=strength, preserve_color=preserve_color, masks=masks, feather=feather if masks else 0.0, stroke=stroke, **extra)


def preview_side(model: Stylizer, size: tuple[int, int], stroke: float) -> int:
    """The longer side to paint a photo of ``size`` (width, height) at for a preview that looks like
    the full-resolution image shrunk: :data:`PREVIEW_SIZE`, or the working size of ``stroke`` where
    that is larger (fine strokes are painted at their own size, then the preview is shrunk)."""
    height, width = model.working_size(size[1], size[0], stroke)
    return max(PREVIEW_SIZE, height, width)


def command_line(
    style: StyleSpec, *, model: str | None = None, strength: float = 1.0, preserve_color: bool = False, region_style: str | None = None, painted: bool = False,
    stroke: float = 1.0,
    refine: int = 0,
    style_images: str | None = None,
) -> str:
    """The ``cin-style stylize`` command that makes the same full-resolution image."""
    words = ["cin-style", "stylize", *(["-m", model] if model else []), "photo.jpg", "-s", str(style)]
    if strength != 1.0:
        words += ["--strength", f"{strength:g}"]
    if stroke != 1.0:
        words += ["--stroke", f"{stroke:g}"]
    if refine:
        words += ["--refine", str(refine), "--style-images", str(style_images)]
    if preserve_color:
        words.append("--preserve-color")
    if painted and region_style:
        words += ["--mask", f"{region_style}=region.png", "--feather", "8"]
    return shlex.join([*words, "-o", "out.jpg"])


def nearest_picks(model: Stylizer, painting: str | os.PathLike) -> tuple[list[str | None], list[float]]:
    """The instant preview of a painting the model does not know: the nearest blend of its styles
    (:meth:`StyleModel.nearest_blend`) as the page's style picks and weights."""
    blend = sorted(model.nearest_blend(painting).items(), key=lambda item: -item[1])[:MAX_BLEND]
    names = [name for name, _ in blend] + [None] * (MAX_BLEND - len(blend))
    weights = [round(weight, 2) for _, weight in blend] + [0.0] * (MAX_BLEND - len(blend))
    return names, weights


def _swatches(model: Stylizer, size: int = 160) -> list[tuple[Image.Image, str]]:
    """Each painting style on the demo photo, captioned with its painting's title and artist."""
    from cin_style.inference.style_model import demo_photo_path

    photo = limit_longer_side(load_image(demo_photo_path()), size)
    return [(model.stylize(photo, name), model.caption(name)) for name in model.styles if name != IDENTITY]


def _file(value: Any) -> str | None:
    """The path of an uploaded file as Gradio sends it unprocessed (a dict with "path"), or a path."""
    return value.get("path") if isinstance(value, dict) else value


def _open_photo(value: Any, max_pixels: int) -> Image.Image:
    """The uploaded photo, read by :func:`cin_style.io.images.load_image` (not by Gradio, whose error
    for a broken file is a page of internals): orientation, size limit and one-line errors as
    everywhere else."""
    path = _file(value)
    if not path:
        raise StyleError("upload, paste or take a photo first")
    return load_image(path, max_pixels=max_pixels)


def build_app(model: Stylizer, *, model_name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, style_images: str | os.PathLike | None = None):
    """The Gradio Blocks of the studio for ``model``; with ``style_images`` (the paintings' folder)
    the full-resolution image can be refined by the optimization method."""
    import gradio as gr

    paintings = [s for s in model.styles if s != IDENTITY]
    can_dial = model.has_identity
    can_refine = model.can_refine and style_images is not None
    failures = (StyleError, ImageLoadError, ValueError, OSError)

    def guarded(fn):
        @functools.wraps(fn)  # the same signature: Gradio passes a progress tracker to functions that take one
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except failures as err:
                raise gr.Error(str(err), print_exception=False) from None

        return run

    def settings(*values):
        names, weights = list(values[:MAX_BLEND]), list(values[MAX_BLEND : 2 * MAX_BLEND])
        strength, keep_colour, stroke, region_style = values[2 * MAX_BLEND :]
        return style_blend(model, names, weights), float(strength), bool(keep_colour), float(stroke), region_style or None

    @functools.lru_cache(maxsize=2)
    def full_photo(path: str) -> Image.Image:  # a slider move repaints the preview without decoding a 12-megapixel file again
        return _open_photo(path, max_pixels)

    @functools.lru_cache(maxsize=8)
    def small_photo(path: str, side: int) -> Image.Image:
        return limit_longer_side(full_photo(path), side)

    def preview(path, editor, *values):
        if not _file(path):
            return None, ""
        style, strength, keep_colour, stroke, region_style = settings(*values)
        photo = small_photo(_file(path), preview_side(model, full_photo(_file(path)).size, stroke))
        region = region_mask(editor, photo.size)
        image = paint(model, photo, style, strength=strength, preserve_color=keep_colour, region_style=region_style, region=region, stroke=stroke)
        line = command_line(style, model=model_name, strength=strength, preserve_color=keep_colour, region_style=region_style, painted=region is not None, stroke=stroke)
        return limit_longer_side(image, PREVIEW_SIZE), line

    def full(path, editor, refine, *values):
        style, strength, keep_colour, stroke, region_style = settings(*values)
        photo = _open_photo(path, max_pixels)
        region = region_mask(editor, photo.size)
        steps = REFINE_STEPS if refine else 0
        image = paint(model, photo, style, strength=strength, preserve_color=keep_colour, region_style=region_style, region=region, stroke=stroke, refine=steps, style_images=style_images)
        out = Path(tempfile.mkdtemp(prefix="cin-style-")) / "stylized.png"
        from cin_style.io.images import save_image

        save_image(image, out)
        return str(out)

    def api(image, style, strength, preserve_colour):
        photo = _open_photo(image, max_pixels)
        return paint(model, photo, style, strength=float(strength), preserve_color=bool(preserve_colour))

    def photo_for_editor(value):
        path = _file(value)
        if path:
            _open_photo(path, max_pixels)
        return path

    def stream(frame, *values):
        if frame is None:
            return None
        style, strength, keep_colour, stroke, _ = settings(*values)
        return paint(model, Image.fromarray(frame), style, strength=strength, preserve_color=keep_colour, stroke=stroke, size=STREAM_SIZE)

    def pick_swatch(event) -> str:  # a click on a swatch makes it the first style
        return paintings[event.index]

    def painting_preview(value):  # at once: the nearest blend of the model's own styles
        path = _file(value)
        if not path:
            return [gr.update() for _ in range(2 * MAX_BLEND)] + [""]
        names, blend = nearest_picks(model, path)
        note = "Preview: the nearest blend of this model's styles. Press the button to fit the painting's own style."
        return [*names, *blend, note]

    def add_painting(value, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's way to show a progress bar
        path = _file(value)
        if not path:
            raise StyleError("upload a painting first")
        name = model.add_style(path, name=Path(path).stem if Path(path).stem != "image" else "my_painting", replace=True, progress=True)
        paintings[:] = [s for s in model.styles if s != IDENTITY]
        choices = gr.update(choices=paintings)
        return [gr.update(choices=paintings, value=name), *[choices] * (MAX_BLEND - 1), 1.0, *[0.0] * (MAX_BLEND - 1), choices, _swatches(model), f"Added the style **{name}**: pick it and blend it like any other."]

    pick_swatch.__annotations__["event"] = gr.SelectData  # how Gradio knows to pass the click (this module's annotations are strings)

    with gr.Blocks(title="cin-style studio") as app:
        gr.Markdown(f"## cin-style studio\n{len(paintings)} styles of one network: pick up to {MAX_BLEND} and blend them; every change repaints the preview.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label="Photo", type="filepath", sources=["upload", "clipboard", "webcam"], elem_id="photo")
                picks, weights = [], []
                for i in range(MAX_BLEND):
                    with gr.Row():
                        picks.append(gr.Dropdown(paintings, value=paintings[i % len(paintings)] if i == 0 else None, label=f"Style {i + 1}", elem_id=f"style{i + 1}"))
                        weights.append(gr.Slider(0, 1, value=1.0 if i == 0 else 0.0, step=0.05, label="weight", elem_id=f"weight{i + 1}"))
                strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength (0: the photo)", visible=can_dial, elem_id="strength")
                keep_colour = gr.Checkbox(label="Preserve the photo's colours", elem_id="preserve")
                stroke = gr.Slider(0.5, 3, value=1.0, step=0.1, label="Stroke size (1: the preview's look at any resolution; 0.5 finer, 2 larger)", elem_id="stroke")
            with gr.Column(scale=1):
                shown = gr.Image(label="Preview", type="pil", interactive=False, elem_id="preview", format="png")
                command = gr.Code(label="The same from the command line", language="shell", interactive=False, wrap_lines=True, elem_id="command")
                refine = gr.Checkbox(label=f"Refine it: {REFINE_STEPS} steps of the optimization method (one style; about 2 s a step on a 2-core CPU)", visible=can_refine, elem_id="refine")
                make = gr.Button("Make the full-resolution image", elem_id="full")
                download = gr.File(label="Full resolution", elem_id="download")
        with gr.Accordion("Regions: paint over the photo, then pick the region's style", open=False):
            editor = gr.ImageEditor(label="Paint the region", type="pil", sources=["upload", "clipboard"], brush=gr.Brush(colors=["#ff0000"]), elem_id="editor")
            region_style = gr.Dropdown(paintings, value=None, label="Style of the painted region", elem_id="region_style")
        with gr.Accordion("Add your own painting", open=False, visible=hasattr(model, "add_style")):
            with gr.Row():
                new_painting = gr.Image(label="Your painting", type="filepath", sources=["upload", "clipboard"], elem_id="new_painting")
                with gr.Column():
                    add = gr.Button("Fit its style (one to two minutes on a CPU)", elem_id="add_style")
                    added = gr.Markdown(elem_id="added")
        with gr.Accordion("Styles of this model", open=False):
            swatches = gr.Gallery(value=_swatches(model), columns=5, height="auto", label="Each style on a sample photo", allow_preview=False, elem_id="swatches")
        with gr.Accordion("Webcam, live", open=False):
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="camera")
                painted = gr.Image(label="Painted", type="pil", format="jpeg", elem_id="painted")
        with gr.Row(visible=False):  # the /stylize endpoint's own inputs (image path, style string, strength, colours)
            api_image = gr.Image(type="filepath")
            api_style, api_strength, api_keep = gr.Textbox(), gr.Number(value=1.0), gr.Checkbox()
            api_out = gr.Image(type="pil", format="png")

        controls = [*picks, *weights, strength, keep_colour, stroke, region_style]
        inputs = [photo, editor, *controls]
        # Uploaded files reach these functions unprocessed (preprocess=False): they are read by
        # cin-style's own image loader, whose errors are one line.
        live = {"trigger_mode": "always_last", "show_progress": "minimal", "api_visibility": "private", "preprocess": False}
        for component in [photo, editor, *controls]:
            component.change(guarded(preview), inputs, [shown, command], **live)
        photo.change(guarded(photo_for_editor), photo, editor, api_visibility="private", preprocess=False)  # the region is painted over the same photo
        make.click(guarded(full), [photo, editor, refine, *controls], download, api_visibility="private", preprocess=False)
        swatches.select(pick_swatch, None, picks[0], api_visibility="private")
        new_painting.change(guarded(painting_preview), new_painting, [*picks, *weights, added], api_visibility="private", preprocess=False)
        add.click(guarded(add_painting), new_painting, [*picks, *weights, region_style, swatches, added], api_visibility="private", preprocess=False)
        camera.stream(guarded(stream), [camera, *controls], painted, stream_every=0.5, api_visibility="private")
        gr.Button(visible=False).click(guarded(api), [api_image, api_style, api_strength, api_keep], api_out, api_name="stylize", preprocess=False)
    return app


def launch(
    model_path: str | os.PathLike | None = None, *, port: int = 7860, share: bool = False, host: str = "127.0.0.1", max_pixels: int = DEFAULT_MAX_PIXELS,
    style_images: str | os.PathLike | None = None,
) -> None:
    """Serve the studio for the model file (the bundled model by default) until interrupted."""
    try:
        import gradio  # noqa: F401 - only to say what to install
    except ImportError:
        raise ValueError('the app needs Gradio: pip install "cin-style[app]"') from None
    from cin_style.inference.loader import load_model

    from cin_style.inference.style_model import pretrained_path

    model = load_model(model_path)
    if hasattr(model, "prepare_preview"):  # an uploaded painting previews at once, the first one too
        model.prepare_preview()
    bundled = model_path is None or Path(model_path).resolve() == pretrained_path().resolve()
    app = build_app(model, model_name=None if bundled else str(model_path), max_pixels=max_pixels, style_images=style_images)  # the bundled model needs no -m
    app.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, share=share, max_file_size="50mb", show_error=True)
