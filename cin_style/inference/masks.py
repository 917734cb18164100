"""Spatial style masks: different styles in different regions of one image, in one pass.

The network already takes per-pixel style weights (B, N, H, W) (see
:class:`~cin_style.network.transformer.ConditionalInstanceNorm2d`); this module turns masks into them.
Masks come as one grayscale image per style (white = this style) or as one label image whose
values name styles (read by :mod:`cin_style.inference.regions`). Feathering blurs the masks so that styles meet in a smooth blend of their
gamma/beta rows rather than a hard seam.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from cin_style.io.images import load_image
from cin_style.network.transformer import StyleTransformer, custom_statistics
from cin_style.network.styles import StyleError, StyleSpec, style_weights

__all__ = ["MaskSource", "check_mask_styles", "mask_weights", "stylize_regions"]

MaskSource = str | os.PathLike | Image.Image | np.ndarray | Tensor


def _as_mask(source: MaskSource, size: tuple[int, int]) -> Tensor:
    """A mask as (H, W) float in [0, 1] at ``size`` (height, width)."""
    if isinstance(source, (str, os.PathLike)):
        source = load_image(source)
    if isinstance(source, Image.Image):
        source = np.asarray(source.convert("L"), dtype=np.float32) / 255.0
    mask = torch.as_tensor(np.asarray(source) if isinstance(source, np.ndarray) else source, dtype=torch.float32)
    if mask.dim() == 3:  # (H, W, C) arrays or (C, H, W) tensors: average the channels
        mask = mask.mean(dim=-1 if mask.shape[-1] in (1, 3, 4) else 0)
    if mask.dim() != 2:
        raise ValueError(f"a mask must be a 2-D image, got shape {tuple(mask.shape)}")
    if mask.max() > 1.0:
        mask = mask / 255.0
    if tuple(mask.shape) != tuple(size):
        mask = F.interpolate(mask[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0]
    return mask.clamp(0, 1)


def _feather(masks: Tensor, radius: float) -> Tensor:
    """Gaussian blur of (K, H, W) masks with sigma = radius / 2 (reflect at the borders)."""
    if radius <= 0:
        return masks
    sigma = radius / 2
    half = max(1, int(round(3 * sigma)))
    x = torch.arange(-half, half + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    m = masks[:, None]
    pad_h, pad_w = min(half, m.shape[-2] - 1), min(half, m.shape[-1] - 1)
    m = F.pad(m, (pad_w, pad_w, pad_h, pad_h), mode="reflect" if pad_h and pad_w else "replicate")
    m = F.conv2d(m, kernel[half - pad_h : half + pad_h + 1].view(1, 1, -1, 1))
    m = F.conv2d(m, kernel[half - pad_w : half + pad_w + 1].view(1, 1, 1, -1))
    return m[:, 0]


def check_mask_styles(masks: Mapping[str | int, MaskSource], names: Sequence[str], *, base: StyleSpec | None = None) -> dict[int, int]:
    """Validate the masks' styles and the base style; return style index -> position in ``masks``."""
    if not masks:
        raise StyleError("no masks given")
    positions: dict[int, int] = {}
    for k, key in enumerate(masks):
        if isinstance(key, str) and ("=" in key or "," in key):
            raise StyleError(f"a mask belongs to one style, not a blend: {key!r}")
        index = int(torch.argmax(style_weights(key, names)))
        if index in positions:
            raise StyleError(f"style {names[index]!r} has two masks")
        positions[index] = k
    if base is not None:
        style_weights(base, names)
    return positions


def mask_weights(
    masks: Mapping[str | int, MaskSource],
    names: Sequence[str],
    size: tuple[int, int],
    *,
    base: StyleSpec | None = None,
    feather: float = 0.0,
) -> Tensor:
    """Per-pixel style weights (N, H, W) for an image of ``size`` (height, width).

    Each mask's value is that style's weight at a pixel; where the masks add up to less than
    1, the ``base`` style (a name or a blend) fills the rest. Weights are normalized per
    pixel. Without a base style every pixel must be covered by some mask.
    """
    one_hots = check_mask_styles(masks, names, base=base)
    m = _feather(torch.stack([_as_mask(source, size) for source in masks.values()]), feather)
    weights = torch.zeros(len(names), *size)
    for index, k in one_hots.items():
        weights[index] = m[k]
    rest = (1 - weights.sum(0)).clamp(min=0)
    if base is not None:
        weights = weights + rest[None] * style_weights(base, names)[:, None, None]
    total = weights.sum(0)
    uncovered = (total <= 1e-6).float().mean().item()
    if uncovered > 0:
        raise StyleError(f"the masks leave {uncovered:.1%} of the image without a style; give a base style (-s) for the rest")
    return weights / total[None]


def stylize_regions(transformer: StyleTransformer, images: Tensor, maps: Tensor) -> Tensor:
    """``transformer(images, maps)`` with exact per-region statistics.

    Per-pixel gamma/beta alone are not enough for a region to look as it does in the
    single-style image: instance norms would take their mean and variance over the whole
    image, mixing the regions' styles, and a region drifts away from its style. So each image
    runs together with one single-style copy per style its masks use (one batch, one forward
    pass), and every norm normalizes each pixel of the masked image with the statistics of
    those copies, blended by the pixel's weights at that layer. Where a mask is 1 (away from
    its edge, by the network's receptive field) the result equals the single-style output up to
    float rounding; across feathered edges statistics and gamma/beta blend together.
    The cost is one extra pass per style used.
    """
    outputs = []
    for image, weights in zip(images, maps):
        used = [n for n in range(weights.shape[0]) if weights[n].max() > 0]
        k = len(used)
        style = weights.new_zeros(1 + k, *weights.shape)
        style[0] = weights
        for j, n in enumerate(used):
            style[1 + j, n] = 1.0

        def statistics(i: int, x: Tensor, style_map: Tensor) -> tuple[Tensor, Tensor]:
            var, mean = torch.var_mean(x[1:].float(), dim=(2, 3), unbiased=False)  # (k, C): the single-style copies
            w = style_map[0, used].float()  # (k, h, w): this pixel's share of each style
            if w.shape[-2:] != x.shape[-2:]:
                w = w.expand(k, *x.shape[-2:])
            mixed_mean = torch.einsum("khw,kc->chw", w, mean)[None]
            mixed_var = torch.einsum("khw,kc->chw", w, var)[None]
            size = (k, x.shape[1], *x.shape[-2:])
            return (
                torch.cat([mixed_mean, mean[:, :, None, None].expand(size)]),
                torch.cat([mixed_var, var[:, :, None, None].expand(size)]),
            )

        with custom_statistics(transformer, statistics):
            outputs.append(transformer(image[None].expand(1 + k, -1, -1, -1), style)[:1])
    return torch.cat(outputs)
