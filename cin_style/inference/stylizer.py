"""What every kind of trained model shares, without PyTorch: style names, blend weights and
the strength dial, files and folders of images, contact sheets.

:class:`~cin_style.inference.style_model.StyleModel` (PyTorch) and :class:`~cin_style.inference.onnx_model.OnnxStyleModel`
(onnxruntime) subclass :class:`Stylizer` and implement :meth:`Stylizer.stylize`; so the command
line treats both alike: the same style parsing, image reading and writing, errors and folder mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from cin_style.io.images import DEFAULT_MAX_PIXELS, ImageLoadError, failure_line, limit_longer_side, load_image, save_image
from cin_style.io.sheets import contact_sheet
from cin_style.inference.strokes import DEFAULT_STROKE, check_stroke, reference_side, working_size
from cin_style.network.styles import IDENTITY, Blend, StyleError, StyleSpec, blend_weights, parse_style

__all__ = ["ENGINES", "Stylizer"]

#: The engines a PyTorch model file can run its whole-image passes on
#: (:func:`cin_style.inference.engines.choose_engine`; ``auto`` picks the fastest measured for the
#: device). Named here, without PyTorch, so that the command line offers them without importing it.
ENGINES = ("auto", "torch", "nnpack", "bf16", "compiled", "onnx")


class Stylizer:
    """A model's style names (in table order), training record and credits, and the work built on
    :meth:`stylize`."""

    def __init__(self, styles: Sequence[str], *, training: Mapping[str, Any] | None = None, credits: list[dict[str, Any]] | None = None) -> None:
        #: The file the model was read from, where it was (set by the loaders).
        self.source: str | None = None
        self.styles = list(styles)
        self.training = dict(training or {})
        self.credits = credits

    @property
    def has_identity(self) -> bool:
        """Whether the model has an identity row (trained to reproduce the photo): the strength dial needs it."""
        return IDENTITY in self.styles

    #: The smallest side the network paints (set by the subclasses).
    min_size: int = 8

    @property
    def reference_side(self) -> int:
        """The shorter side (pixels) stroke 1 paints at: the training photos' (:func:`cin_style.inference.strokes.reference_side`)."""
        return reference_side(self.training)

    def check_stroke(self, stroke: float | str) -> float | str:
        """The stroke factor parsed (a positive number or ``"native"``); :class:`~cin_style.inference.strokes.StrokeError`
        for one :meth:`stylize` would refuse, before any image is read."""
        return check_stroke(stroke, reference=self.reference_side, min_size=self.min_size)

    def working_size(self, height: int, width: int, stroke: float | str) -> tuple[int, int]:
        """The (height, width) the network paints a photo of that size at (:func:`cin_style.inference.strokes.working_size`)."""
        return working_size(height, width, stroke, reference=self.reference_side, min_size=self.min_size)

    #: Whether :meth:`stylize` can refine its output by the optimization method (it needs PyTorch and VGG-16).
    can_refine: bool = False

    def check_refine(self, refine: int, style: StyleSpec | None, *, style_images: Any = None, strength: float = 1.0, masks: Any = None) -> int:
        """``refine`` (optimization steps after the network; 0: none) checked with what it needs,
        before any image is read: a whole number, PyTorch, one style, and the paintings' folder."""
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise ValueError(f"refine must be a whole number of optimization steps (0: none), got {refine!r}")
        if not refine:
            return 0
        if not self.can_refine:
            raise ValueError("refining runs the optimization method through VGG-16 in PyTorch: give the .safetensors model, not the ONNX file")
        if masks is not None or strength != 1.0 or style is None or max(self.blend(style)) < 1.0:
            raise StyleError("refining optimizes towards one painting: give one style, without masks, blends or a strength")
        if style_images is None:
            raise ValueError("refining needs the painting: give the folder of paintings the model was trained on (--style-images DIR, style_images=)")
        return refine

    def credit(self, name: str) -> dict[str, Any] | None:
        """The credit record of a style's painting (title, artist, year, licence, source), None without one."""
        return next((c for c in self.credits or [] if c.get("style") == name), None)

    def caption(self, name: str) -> str:
        """The painting behind a style in a few words: ``Title (Artist, year)``; the bare title
        where no artist is recorded (the identity row); the style's name without a credit."""
        c = self.credit(name) or {}
        if not (c.get("title") or c.get("artist")):
            return name
        if not c.get("artist"):
            return c.get("title", "")
        year = f", {c['year']}" if c.get("year") and c.get("year") != "unknown" else ""
        return f"{c.get('title', '?')} ({c['artist']}{year})"

    def describe_styles(self) -> list[str]:
        """One line per style: its name, and with credits its :meth:`caption` and the licence."""
        lines = []
        for name in self.styles:
            c = self.credit(name) or {}
            caption = self.caption(name)
            if caption == name:
                lines.append(name)
            elif not c.get("artist"):  # the identity row: no painting, no licence
                lines.append(f"{name}\t{caption}")
            else:
                licence = (c.get("license") or "licence not recorded").split(";")[0]  # the full text stays in the model file
                lines.append(f"{name}\t{caption}; {licence}")
        return lines

    def blend(self, style: StyleSpec, *, strength: float = 1.0) -> list[float]:
        """The normalized blend weights, one per style, for a style name, index or mix
        (:func:`cin_style.network.styles.blend_weights`; ``strength`` < 1 dials towards the identity row)."""
        return blend_weights(style, self.styles, strength=strength)

    def parse_style(self, style: StyleSpec) -> Blend:
        """A style name, index, mapping or the command line's ``"a=0.7,b=0.3"`` parsed once into a
        :class:`~cin_style.network.styles.Blend` of this model's styles, which every later call takes as it is."""
        return parse_style(style, self.styles)

    def check_style(self, style: StyleSpec | None = None, *, strength: float = 1.0, masks: Mapping[str | int, Any] | None = None) -> None:
        """Raise :class:`StyleError` for a selection :meth:`stylize` would refuse, before any image is read."""
        if masks is not None:
            raise StyleError(f"{type(self).__name__} cannot paint regions (masks); use the PyTorch model file (.safetensors)")
        if style is None:
            raise StyleError(f"give a style (or masks); known styles: {', '.join(self.styles)}")
        self.blend(style, strength=strength)

    def check_request(
        self, style: StyleSpec | None, *, sheet: bool = False, devices: int = 1, masks: Any = None, strength: float = 1.0,
        stroke: float | str = DEFAULT_STROKE, refine: int = 0, style_images: Any = None, **options: Any,
    ) -> None:
        """Everything :meth:`stylize_file` and :meth:`stylize_files` would refuse, raised before any
        image is read (so a folder of a thousand photos fails at once, not at every file): the
        stroke, the style, masks and strength, the refinement, and what a contact sheet allows."""
        self.check_stroke(stroke)
        if sheet:
            if refine:
                raise StyleError("refining paints one style, a contact sheet every style: drop one of them (--refine, --all-styles)")
            if devices != 1:
                raise ValueError("contact sheets (all styles) are made on one device; drop --devices")
            return
        self.check_style(style, strength=strength, masks=masks)
        self.check_refine(refine, style, style_images=style_images, strength=strength, masks=masks)

    def stylize(self, images: Any, style: StyleSpec | None = None, **options: Any) -> Any:
        """Stylize one image or a list of images; see the subclasses."""
        raise NotImplementedError

    def stylize_file(
        self, source: str | os.PathLike, output: str | os.PathLike, style: StyleSpec | None = None, *, sheet: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS, quality: int = 95, size: int | None = None, **options: Any,
    ) -> None:
        """Read an image file, stylize it (:meth:`stylize` with ``options``), or with ``sheet`` make
        its :meth:`style_sheet`, and write the result atomically to ``output`` (format from its suffix)."""
        self.check_request(style, sheet=sheet, **options)
        photo = load_image(source, max_pixels=max_pixels)
        image = self.style_sheet(photo, size=size) if sheet else self.stylize(photo, style, size=size, **options)
        save_image(image, output, quality=quality)

    def stylize_files(self, pairs: Sequence[tuple[Path, Path]], style: StyleSpec | None = None, *, devices: int = 1, **options: Any) -> list[str] | None:
        """:meth:`stylize_file` for each (source, output) pair, with a progress bar; a file that
        fails is skipped. Returns one line per failure (the file and why)."""
        from tqdm.auto import tqdm

        if devices != 1:
            raise ValueError(f"{type(self).__name__} runs on one device; drop --devices")
        self.check_request(style, **options)
        failures = []
        for source, output in tqdm(pairs, unit="image", desc="stylize"):
            try:
                self.stylize_file(source, output, style, **options)
            except (ImageLoadError, OSError, ValueError) as err:
                failures.append(failure_line(source, str(err)))
        return failures

    @staticmethod
    def _photo(image: str | os.PathLike | Image.Image, size: int | None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
        photo = load_image(image, max_pixels=max_pixels) if isinstance(image, (str, os.PathLike)) else image.convert("RGB")
        return limit_longer_side(photo, size)

    def style_sheet(
        self, images: str | os.PathLike | Image.Image | Sequence[str | os.PathLike | Image.Image], *, size: int | None = None
    ) -> Image.Image:
        """Each photo followed by its output in every style, captioned, as one contact sheet: one
        photo wraps into a near-square grid, several photos give one row each."""
        several = isinstance(images, Sequence) and not isinstance(images, str)
        photos = [self._photo(image, size) for image in (images if several else [images])]
        names = ["photo", *self.styles]
        rows = [[photo] + [self.stylize(photo, i) for i in range(len(self.styles))] for photo in photos]
        if several:
            return contact_sheet(rows, labels=[names] + [[""] * len(names)] * (len(rows) - 1))
        ncols = min(len(names), max(2, round(len(names) ** 0.5 * 1.5)))
        wrap = lambda items: [items[i : i + ncols] for i in range(0, len(items), ncols)]  # noqa: E731
        return contact_sheet(wrap(rows[0]), labels=wrap(names))
