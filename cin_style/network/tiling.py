"""Exact tiled inference: stylize images larger than memory allows, with the same result.

Cutting an image into tiles and stylizing each tile on its own changes the look: instance
normalization then normalizes every tile by its own mean and variance, so tiles come out
with different contrast and colour casts, and seams show. Here every instance-norm
statistic is gathered over the *whole* image, tile by tile, before it is used, and every
convolution sees exactly the neighbours (or the reflection padding at the image border) it
would see whole. The result equals the untiled forward pass up to floating-point rounding.

How: the network is run as a few *chains* of reflection-padded conv + norm layers between
tensors kept whole at low cost (the padded input, the 1/4-resolution activations around the
residual blocks, the 3-channel output). Inside a chain, the statistics of layer ``i`` are
gathered by running layers ``0..i`` over tiles of layer ``i``'s output (recomputing the
earlier layers rather than storing their full-resolution activations), so memory stays
bounded by the tile size plus a few whole low-resolution tensors. The price is extra
compute: about 1.8x the convolution work of one untiled pass.

The network is not restated here: the chains walk :meth:`StyleTransformer.stages`, each window
is the layer's own :meth:`~cin_style.network.transformer.ConvCIN.convolve_window` and each norm
its own ``normalize``; this module adds only the tiles and the statistics gathered over them.
Nothing of files, training or Lightning.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from cin_style.network.transformer import Activation, ConvCIN, Region, Stage, StyleTransformer, resize_style_map

__all__ = ["MIN_TILE", "stylize_tiled", "tile_passes"]

#: The smallest tile side (input pixels): below it the halos dwarf the tiles.
MIN_TILE = 32


@dataclass
class _Step:
    layer: ConvCIN
    act: Activation
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    style_map: Tensor
    mean: Tensor | None = None
    var: Tensor | None = None


class _RunningStats:
    """Per-(sample, channel) mean and variance merged over tiles (Chan et al.'s parallel update, float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, x: Tensor) -> None:
        n = x.shape[-2] * x.shape[-1]
        var, mean = torch.var_mean(x.double(), dim=(2, 3), keepdim=True, unbiased=False)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, var * n
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + var * n + delta.square() * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[Tensor, Tensor]:
        assert self.mean is not None and self.m2 is not None
        return self.mean.float(), (self.m2 / self.count).float()


def _split(length: int, tile: int) -> list[tuple[int, int]]:
    """Near-equal pieces of at most ``tile`` (so no sliver is much smaller than the rest)."""
    pieces = max(1, math.ceil(length / tile))
    bounds = [round(i * length / pieces) for i in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _tiles(size: tuple[int, int], tile: int) -> Iterator[Region]:
    for r0, r1 in _split(size[0], tile):
        for c0, c1 in _split(size[1], tile):
            yield r0, r1, c0, c1


def _crop_map(style_map: Tensor, region: Region) -> Tensor:
    if style_map.shape[-2:] == (1, 1):
        return style_map
    r0, r1, c0, c1 = region
    return style_map[..., r0:r1, c0:c1]


class _Chain:
    """A stage's conv-CIN layers from a whole ``source`` tensor; computes any layer over any region exactly."""

    def __init__(self, source: Tensor, stage: Stage, style: Tensor, *, tile: int, full_rows: int) -> None:
        self.source = source
        self.steps: list[_Step] = []
        self.tiles: list[int] = []
        size = tuple(source.shape[-2:])
        for layer, act in stage.layers:
            out = layer.output_size(size)
            self.steps.append(_Step(layer, act, size, out, layer.norm.style_map(style, out)))
            self.tiles.append(_tile_at(tile, out, full_rows))
            size = out

    def _input(self, i: int, region: Region) -> Tensor:
        """Layer ``i``'s input over ``region`` (its own coordinates, inside the tensor)."""
        r0, r1, c0, c1 = region
        if i == 0:
            return self.source[..., r0:r1, c0:c1]
        return self.post(i - 1, region)

    def pre(self, i: int, region: Region) -> Tensor:
        """Layer ``i``'s convolution output (before its norm) over ``region``: the layer's own
        window of its convolution (:meth:`ConvCIN.convolve_window`), reading its input from the chain."""
        step = self.steps[i]
        return step.layer.convolve_window(lambda window: self._input(i, window), region, step.in_size)

    def post(self, i: int, region: Region) -> Tensor:
        """Layer ``i``'s output after its norm (with whole-image statistics) and activation."""
        step = self.steps[i]
        assert step.mean is not None, "statistics are gathered in order"
        y = step.layer.norm.normalize(self.pre(i, region), step.mean, step.var, _crop_map(step.style_map, region))
        return step.act(y) if step.act is not None else y

    def run(self, tick: Callable[[], None]) -> Tensor:
        """Every layer but the last normalized with whole-image statistics; the last returned whole and normalized."""
        for i in range(len(self.steps) - 1):
            stats = _RunningStats()
            for region in _tiles(self.steps[i].out_size, self.tiles[i]):
                stats.update(self.pre(i, region))
                tick()
            self.steps[i].mean, self.steps[i].var = stats.result()
        last = len(self.steps) - 1
        step = self.steps[last]
        out = None
        for region in _tiles(step.out_size, self.tiles[last]):
            y = self.pre(last, region)
            if out is None:
                out = y.new_empty((*y.shape[:2], *step.out_size))
            r0, r1, c0, c1 = region
            out[..., r0:r1, c0:c1] = y
            tick()
        assert out is not None
        normalize_in_place(out, step.layer, step.act, step.style_map, band=self.tiles[last])
        return out


def normalize_in_place(x: Tensor, layer: ConvCIN, act: Activation, style_map: Tensor, *, band: int) -> None:
    """Apply ``layer``'s norm (statistics of the whole of ``x``) and ``act`` to ``x``, band by band."""
    stats = _RunningStats()
    for r0, r1 in _split(x.shape[-2], band):
        stats.update(x[..., r0:r1, :])
    mean, var = stats.result()
    for r0, r1 in _split(x.shape[-2], band):
        region = (r0, r1, 0, x.shape[-1])
        y = layer.norm.normalize(x[..., r0:r1, :], mean, var, _crop_map(style_map, region))
        x[..., r0:r1, :] = act(y) if act is not None else y


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def _release_free_memory() -> None:
    """Hand memory freed by the previous chain's tiles back to the OS (glibc keeps it otherwise).

    On CPU the many mid-sized tile temporaries fragment glibc's heap; without this a 4K image
    peaks about 0.3 GB higher, which is a third of what tiling is there to save.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _tile_at(tile: int, size: tuple[int, int], full_rows: int) -> int:
    # ``tile`` is in input pixels; a layer at 1/2 or 1/4 resolution takes proportionally smaller tiles.
    return max(8, tile * size[0] // full_rows)


def tile_passes(net: StyleTransformer, height: int, width: int, *, tile: int) -> int:
    """How many tile evaluations :func:`stylize_tiled` makes for one image (for progress bars)."""
    full = net.padded_size(height, width)
    total, size = 0, full
    for stage in net.stages():
        for layer, _ in stage.layers:
            size = layer.output_size(size)
            t = _tile_at(tile, size, full[0])
            total += len(_split(size[0], t)) * len(_split(size[1], t))
    return total


@torch.inference_mode()
def stylize_tiled(
    net: StyleTransformer, images: Tensor, style: Tensor, *, tile: int = 512, progress: Callable[[], None] | None = None
) -> Tensor:
    """``net(images, style)`` computed tile by tile with whole-image statistics.

    ``tile`` is the side of a tile in input pixels (at least 32); ``progress`` is called
    once per tile evaluation (see :func:`tile_passes` for the total).
    """
    if tile < MIN_TILE:
        raise ValueError(f"tile must be at least {MIN_TILE} pixels, got {tile}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if style.shape[0] != images.shape[0]:
        raise ValueError(f"{style.shape[0]} style-weight rows for {images.shape[0]} images")
    tick = progress or (lambda: None)
    h, w = images.shape[-2:]
    unpadded_style = resize_style_map(style, net.num_styles, (h, w))
    x, style = net.pad(images, style)
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    kw = {"tile": tile, "full_rows": x.shape[-2]}
    for stage in net.stages():  # each stage's input and output are kept whole; between them, tiles
        y = _Chain(x, stage, style, **kw).run(tick)
        if stage.residual:
            y += x
        del x
        _release_free_memory()
        x = y
    logits = x[..., top : top + h, left : left + w]
    del x, y
    # The photo skip is per pixel: band by band, so its temporaries stay tile-sized.
    out = torch.empty_like(logits)
    for r0, r1 in _split(h, tile):
        band = (r0, r1, 0, w)
        out[..., r0:r1, :] = net.photo(logits[..., r0:r1, :], images[..., r0:r1, :], _crop_map(unpadded_style, band))
    return out
