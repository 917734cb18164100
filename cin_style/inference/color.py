"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving Color in
Neural Artistic Style Transfer"): keep the photo's colours, take only the painting's strokes.

Luminance-only transfer: the stylized image's luminance (Y of YCbCr) is combined with the
photo's chroma (Cb, Cr). Y is where brush strokes, textures and shading live; Cb/Cr carry the
hue and saturation, so the result keeps the photo's colours exactly, up to clipping to [0, 1].
BT.601 full-range coefficients, as JPEG uses.

The same code serves PyTorch tensors and NumPy arrays (the ONNX runtime path, without PyTorch).
"""

from __future__ import annotations

import sys
from typing import TypeVar

import numpy as np

__all__ = ["rgb_to_ycbcr", "ycbcr_to_rgb", "preserve_color"]

_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_OFFSET = np.array([0.0, 0.5, 0.5])

Images = TypeVar("Images")  # a torch.Tensor or a numpy.ndarray, (..., 3, H, W)


def _like(values: np.ndarray, x):
    """``values`` as an array of ``x``'s kind, dtype and device."""
    if isinstance(x, np.ndarray):
        return values.astype(x.dtype)
    return sys.modules["torch"].as_tensor(values, dtype=x.dtype, device=x.device)  # a tensor: PyTorch is loaded


def _einsum(x):
    return np.einsum if isinstance(x, np.ndarray) else sys.modules["torch"].einsum


def rgb_to_ycbcr(rgb: Images) -> Images:
    """(..., 3, H, W) RGB in [0, 1] -> YCbCr in [0, 1] (chroma centred on 0.5)."""
    return _einsum(rgb)("ij,...jhw->...ihw", _like(_RGB_TO_YCBCR, rgb), rgb) + _like(_OFFSET, rgb)[:, None, None]


def ycbcr_to_rgb(ycbcr: Images) -> Images:
    return _einsum(ycbcr)("ij,...jhw->...ihw", _like(_YCBCR_TO_RGB, ycbcr), ycbcr - _like(_OFFSET, ycbcr)[:, None, None])


def preserve_color(stylized: Images, photo: Images) -> Images:
    """The stylized image's luminance with the photo's chroma, clipped to [0, 1]."""
    ycbcr = rgb_to_ycbcr(photo.astype(stylized.dtype) if isinstance(photo, np.ndarray) else photo.to(stylized))
    ycbcr[..., :1, :, :] = rgb_to_ycbcr(stylized)[..., :1, :, :]
    return ycbcr_to_rgb(ycbcr).clip(0, 1)
