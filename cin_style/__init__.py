"""cin-style: one feed-forward network that paints a photo in any of N styles, or any blend.

Conditional instance normalization (Dumoulin, Shlens & Kudlur, ICLR 2017) trained with
perceptual losses (Johnson, Alahi & Fei-Fei, ECCV 2016).

The public names are imported on first use, so that ``import cin_style.cli`` does not import
PyTorch before the command line has set up the process (see :mod:`cin_style.cli`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "StyleModel": "api",
    "LossConfig": "loss",
    "PerceptualLoss": "loss",
    "gram_matrix": "loss",
    "ConditionalInstanceNorm2d": "model",
    "PhotoSkip": "model",
    "StyleTransformer": "model",
    "TransformerConfig": "model",
    "one_hot_styles": "model",
    "VGG16Features": "vgg",
    "VGGWeightsError": "vgg",
    "resolve_vgg16_weights": "vgg",
}

__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    # Explicit re-exports ("X as X"), for type checkers and linters.
    from .api import StyleModel as StyleModel
    from .loss import LossConfig as LossConfig, PerceptualLoss as PerceptualLoss, gram_matrix as gram_matrix
    from .model import (
        ConditionalInstanceNorm2d as ConditionalInstanceNorm2d,
        PhotoSkip as PhotoSkip,
        StyleTransformer as StyleTransformer,
        TransformerConfig as TransformerConfig,
        one_hot_styles as one_hot_styles,
    )
    from .vgg import VGG16Features as VGG16Features, VGGWeightsError as VGGWeightsError, resolve_vgg16_weights as resolve_vgg16_weights


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cin_style' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
