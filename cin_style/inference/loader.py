"""One function picks the engine family of a model file: :func:`load_model`. Above both
:class:`~cin_style.inference.style_model.StyleModel` and
:class:`~cin_style.inference.onnx_model.OnnxStyleModel`, which share
:class:`~cin_style.inference.stylizer.Stylizer`; each is imported only when its file comes, so an
ONNX-only install never imports PyTorch."""

from __future__ import annotations

import os
from pathlib import Path

from cin_style.inference.stylizer import Stylizer

__all__ = ["load_model"]


def load_model(path: str | os.PathLike | None = None, *, device: str | None = None, engine: str = "auto") -> Stylizer:
    """A model file by its suffix: ``.onnx`` through onnxruntime (:class:`~cin_style.inference.onnx_model.OnnxStyleModel`,
    without PyTorch), anything else through PyTorch (:class:`~cin_style.inference.style_model.StyleModel`, with
    ``engine`` as in :meth:`~cin_style.inference.style_model.StyleModel.load`); None: the bundled model."""
    if path is not None and Path(path).suffix.lower() == ".onnx":
        from cin_style.inference.onnx_model import OnnxStyleModel

        return OnnxStyleModel.load(path, device=device)
    from cin_style.inference.style_model import StyleModel

    return StyleModel.pretrained(device=device, engine=engine) if path is None else StyleModel.load(path, device=device, engine=engine)
