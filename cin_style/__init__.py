"""cin-style: one feed-forward network that paints a photo in any of N styles, or any blend.

Conditional instance normalization (Dumoulin, Shlens & Kudlur, ICLR 2017) trained with
perceptual losses (Johnson, Alahi & Fei-Fei, ECCV 2016).

The public names are imported on first use, so that ``import cin_style.cli`` does not import
PyTorch before the command line has set up the process (see :mod:`cin_style.cli`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "StyleModel": "inference.style_model",
    "LossConfig": "losses.perceptual",
    "PerceptualLoss": "losses.perceptual",
    "gram_matrix": "losses.perceptual",
    "ConditionalInstanceNorm2d": "network.transformer",
    "PhotoSkip": "network.transformer",
    "StyleTransformer": "network.transformer",
    "TransformerConfig": "network.transformer",
    "one_hot_styles": "network.transformer",
    "VGG16Features": "losses.vgg",
    "VGGWeightsError": "losses.vgg",
    "resolve_vgg16_weights": "losses.vgg",
}

__all__ = sorted(_PUBLIC)

#: Where the modules of the flat layout (before the layer folders, docs/architecture.md) live now.
#: ``import cin_style.model`` and ``from cin_style.api import StyleModel`` keep working: the old
#: name is the new module itself (one object, so patching either patches both), with a
#: DeprecationWarning that names the new path.
_MOVED = {
    "model": "network.transformer", "phase": "network.phase", "fastconv": "network.fastconv", "fast": "network.fast",
    "tiling": "network.tiling", "styles": "network.styles",
    "files": "io.files", "images": "io.images", "sheets": "io.sheets", "modelfile": "io.modelfile", "export": "io.export",
    "vgg": "losses.vgg", "loss": "losses.perceptual", "stability": "losses.stability", "optimize": "losses.optimize",
    "api": "inference.style_model", "stylizer": "inference.stylizer", "runtime": "inference.onnx_model",
    "predict": "inference.predict", "video": "inference.video", "strokes": "inference.strokes", "regions": "inference.regions",
    "memory": "inference.memory", "masks": "inference.masks", "color": "inference.color",
    "evaluate": "quality.evaluate",
    "data": "training.data", "module": "training.module", "train": "training.train",
}  # fmt: skip


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``cin_style.<old name>`` and hands back the module at its new path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, name = fullname.partition(".")
        if package != __name__ or name not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        new = f"{__name__}.{_MOVED[spec.name.partition('.')[2]]}"
        warnings.warn(f"{spec.name} has moved to {new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: Any) -> None:
        pass  # the new module is already executed


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())

if TYPE_CHECKING:
    # Explicit re-exports ("X as X"), for type checkers and linters.
    from cin_style.inference.style_model import StyleModel as StyleModel
    from cin_style.losses.perceptual import LossConfig as LossConfig, PerceptualLoss as PerceptualLoss, gram_matrix as gram_matrix
    from cin_style.network.transformer import (
        ConditionalInstanceNorm2d as ConditionalInstanceNorm2d,
        PhotoSkip as PhotoSkip,
        StyleTransformer as StyleTransformer,
        TransformerConfig as TransformerConfig,
        one_hot_styles as one_hot_styles,
    )
    from cin_style.losses.vgg import VGG16Features as VGG16Features, VGGWeightsError as VGGWeightsError, resolve_vgg16_weights as resolve_vgg16_weights


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cin_style' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
