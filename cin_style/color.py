"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving Color in
Neural Artistic Style Transfer"): keep the photo's colours, take only the painting's strokes.

Luminance-only transfer: the stylized image's luminance (Y of YCbCr) is combined with the
photo's chroma (Cb, Cr). Y is where brush strokes, textures and shading live; Cb/Cr carry the
hue and saturation, so the result keeps the photo's colours exactly, up to clipping to [0, 1].
BT.601 full-range coefficients, as JPEG uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rgb_to_ycbcr", "ycbcr_to_rgb", "preserve_color"]

_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> YCbCr in [0, 1] (chroma centred on 0.5)."""
    m = _RGB_TO_YCBCR.to(rgb)
    return torch.einsum("ij,...jhw->...ihw", m, rgb) + _OFFSET.to(rgb)[:, None, None]


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    m = torch.linalg.inv(_RGB_TO_YCBCR.double()).to(ycbcr)
    return torch.einsum("ij,...jhw->...ihw", m, ycbcr - _OFFSET.to(ycbcr)[:, None, None])


def preserve_color(stylized: Tensor, photo: Tensor) -> Tensor:
    """The stylized image's luminance with the photo's chroma, clipped to [0, 1]."""
    y = rgb_to_ycbcr(stylized)[..., :1, :, :]
    cbcr = rgb_to_ycbcr(photo.to(stylized))[..., 1:, :, :]
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=-3)).clamp(0, 1)
