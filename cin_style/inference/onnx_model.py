"""Stylize with an exported ONNX file through onnxruntime, without PyTorch.

``cin-style export MODEL -o model.onnx`` (:func:`cin_style.io.export.export_onnx`) writes one graph
for every style and blend: inputs ``image`` (B, 3, H, W) float32 in [0, 1] of any size and
``style`` (B, N) float32 blend weights, output ``stylized`` (B, 3, H, W) in [0, 1]. The style
names, the training record and the paintings' credits travel in the file's ``metadata_props``
under ``cin_style`` (JSON), so the file stands alone. :class:`OnnxStyleModel` reads it with
onnxruntime, NumPy and Pillow only (``pip install "cin-style[onnx]"``) and shares the style
parsing, image files and folder mode of :class:`~cin_style.inference.stylizer.Stylizer`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cin_style.inference.color import preserve_color as _preserve_color
from cin_style.io.images import array_to_pil, load_image, to_array
from cin_style.inference.stylizer import Stylizer
from cin_style.io.onnx_format import INPUTS, METADATA_KEY, ONNX_FORMAT, ONNX_FORMAT_VERSION, OUTPUT
from cin_style.inference.strokes import DEFAULT_STROKE, guided_upsample
from cin_style.network.padding import centred_pad
from cin_style.network.styles import IDENTITY, StyleSpec

__all__ = ["ONNX_FORMAT", "ONNX_FORMAT_VERSION", "METADATA_KEY", "INPUTS", "OUTPUT", "OnnxModelError", "OnnxStyleModel"]



class OnnxModelError(ValueError):
    """An ONNX file that cannot be used: unreadable, not a cin-style model, or onnxruntime missing."""


class OnnxStyleModel(Stylizer):
    """An exported cin-style network run by onnxruntime.

    ``stylize`` takes a path, a PIL image or a uint8 NumPy array (H, W, 3), or a list of these,
    with a style name, index or blend and the strength dial, as :class:`~cin_style.inference.style_model.StyleModel`
    does; regions (masks) and exact tiles need the PyTorch model.
    """

    device = "cpu"

    def __init__(self, session: Any, record: Mapping[str, Any]) -> None:
        super().__init__(record["styles"], training=record.get("training"), credits=record.get("credits"))
        self.session = session
        self.record = dict(record)
        self.min_size = int(record["min_size"])

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None, threads: int | None = None) -> OnnxStyleModel:
        """Open an ONNX file written by ``cin-style export`` (on the CPU; ``threads``: onnxruntime's
        intra-op threads, default all cores)."""
        path = Path(path)
        if device not in (None, "cpu"):
            raise OnnxModelError(f"ONNX files run on the CPU here (onnxruntime's CPU provider), not on {device!r}; drop --device")
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxModelError('ONNX files need onnxruntime: pip install "cin-style[onnx]"') from None
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are for developers of the graph
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types for broken files
            raise OnnxModelError(f"{path}: not a readable ONNX file ({str(err).splitlines()[0][:200]})") from None
        raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            record = json.loads(raw) if raw is not None else {}
        except json.JSONDecodeError as err:
            raise OnnxModelError(f"{path}: broken {METADATA_KEY} metadata ({err})") from None
        if record.get("format") != ONNX_FORMAT:
            raise OnnxModelError(f"{path}: not a cin-style ONNX model (no {METADATA_KEY!r} metadata of format {ONNX_FORMAT!r})")
        if int(record.get("format_version", 0)) > ONNX_FORMAT_VERSION:
            raise OnnxModelError(f"{path}: ONNX model format version {record['format_version']} is newer than this cin-style understands; upgrade cin-style")
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if names != (list(INPUTS), [OUTPUT]) or not isinstance(record.get("styles"), list):
            raise OnnxModelError(f"{path}: inputs {names[0]} and outputs {names[1]} are not those of a cin-style model")
        model = cls(session, record)
        model.source = str(path)
        return model

    def __repr__(self) -> str:
        return f"OnnxStyleModel({len(self.styles)} styles: {', '.join(self.styles[:5])}{', ...' if len(self.styles) > 5 else ''})"

    def run(self, images: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The graph on float32 images (B, 3, H, W) in [0, 1] with blend weights (B, N).

        The graph pads any size from ``min_size`` up itself; smaller images are padded here
        first, as :meth:`cin_style.network.transformer.StyleTransformer.pad` does them, and cropped after.
        """
        h, w = images.shape[-2:]
        if h >= self.min_size and w >= self.min_size:
            return self.session.run([OUTPUT], {INPUTS[0]: images, INPUTS[1]: weights})[0]
        (left, right, top, bottom), reflect = centred_pad(h, w, multiple=int(self.record["size_multiple"]), min_size=self.min_size)
        padded = np.pad(images, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect" if reflect else "edge")
        return self.run(padded, weights)[..., top : top + h, left : left + w]

    def stylize(
        self, images: Any, style: StyleSpec | None = None, *, strength: float = 1.0, preserve_color: bool = False,
        stroke: float | str = DEFAULT_STROKE, size: int | None = None, **options: Any,
    ) -> Any:
        """Stylize one image or a list of images (see the class), ``stroke`` as for
        :meth:`cin_style.inference.style_model.StyleModel.stylize` (the working size and guided upsampling of
        :mod:`cin_style.inference.strokes`, in NumPy). Of the other options of
        :meth:`cin_style.inference.style_model.StyleModel.stylize`, ``masks``, a ``tile`` size and ``refine`` are
        refused (regions, exact tiles and the optimization need PyTorch); ``feather`` and
        ``progress`` change nothing here."""
        unknown = set(options) - {"masks", "tile", "feather", "progress", "refine", "style_images"}
        if unknown:
            raise TypeError(f"stylize() got unexpected keyword argument(s) {', '.join(sorted(unknown))}")
        masks, tile = options.get("masks"), options.get("tile")
        self.check_style(style, strength=strength, masks=masks)
        self.check_refine(options.get("refine", 0), style, style_images=options.get("style_images"), strength=strength)  # refused: it needs PyTorch
        stroke = self.check_stroke(stroke)
        if tile:
            raise ValueError("exact tiles need the PyTorch model file (.safetensors); the ONNX graph paints whole images")
        if isinstance(images, list):
            return [self.stylize(image, style, strength=strength, preserve_color=preserve_color, stroke=stroke, size=size) for image in images]
        array = isinstance(images, np.ndarray)
        if array and (images.dtype != np.uint8 or images.ndim != 3 or images.shape[2] != 3):
            raise ValueError(f"a numpy image for the ONNX model must be uint8 (H, W, 3), got {images.dtype} {images.shape}")
        photo = Image.fromarray(images, "RGB") if array else load_image(images) if isinstance(images, (str, os.PathLike)) else images
        photo = self._photo(photo, size)
        weights = self.blend(style, strength=strength)
        height, width = self.working_size(photo.height, photo.width, stroke)
        x = to_array(photo)[None]
        if (height, width) == (photo.height, photo.width):
            out = self.run(x, np.asarray([weights], dtype=np.float32))
        else:  # paint at the working size, then bring it to full size with the photo's edges
            small = to_array(photo.resize((width, height), Image.Resampling.BICUBIC))[None]
            painted = self.run(small, np.asarray([weights], dtype=np.float32))
            prior = weights[self.styles.index(IDENTITY)] if self.has_identity else 0.0
            out = guided_upsample(painted, small, x, prior=prior)
        out = _preserve_color(out, x) if preserve_color else out
        result = array_to_pil(out[0])
        return np.asarray(result) if array else result
