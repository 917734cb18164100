"""The fast inference path: bfloat16, channels-last memory and a compiled graph.

On a GPU the transformer is bound by memory traffic and kernel launches far more than by
its 153,792 multiply-adds per pixel, so :class:`CompiledTransformer` runs it

* under bfloat16 autocast (tensor cores; the norms still take float32 statistics, see
  :class:`~cin_style.network.transformer.ConditionalInstanceNorm2d`),
* in channels-last memory, the layout cuDNN's fastest convolutions want,
* compiled by ``torch.compile`` (inductor fuses each norm, activation and residual add into
  the neighbouring kernels), by default with CUDA graphs (``mode="reduce-overhead"``) so that
  a 4K frame costs one graph launch.

The style weights are a tensor *input* of the compiled graph, never a constant of it:
picking another style or another blend reuses the same graph (no recompilation); only a new
image size or batch size compiles again. The module knows nothing of files or Lightning.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from cin_style.network.transformer import StyleTransformer

__all__ = ["CompiledTransformer"]


class CompiledTransformer:
    """A compiled, optionally low-precision copy of a :class:`StyleTransformer` for inference.

    Args:
        transformer: the network; it is copied, so the original stays as it is.
        dtype: autocast dtype, or ``None`` for float32.
        channels_last: keep activations in NHWC memory.
        compile: run through ``torch.compile`` (``False`` keeps eager mode, for comparison).
        mode: ``torch.compile`` mode; ``None`` picks ``"reduce-overhead"`` (CUDA graphs) on
            CUDA and the default elsewhere.
    """

    def __init__(
        self,
        transformer: StyleTransformer,
        *,
        dtype: torch.dtype | None = torch.bfloat16,
        channels_last: bool = True,
        compile: bool = True,
        mode: str | None = None,
    ) -> None:
        self.net = copy.deepcopy(transformer).eval().requires_grad_(False)
        self.device = next(self.net.parameters()).device
        self.dtype = dtype
        self.channels_last = channels_last
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if mode is None and self.device.type == "cuda":
            mode = "reduce-overhead"
        # dynamic=False: one specialised graph per image size, the fastest kernels for each.
        self._forward = torch.compile(self._eager, dynamic=False, mode=mode) if compile else self._eager

    def _eager(self, images: Tensor, style: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = self.net(images, style)
        return out.float()

    @torch.inference_mode()
    def __call__(self, images: Tensor, style: Tensor) -> Tensor:
        """``transformer(images, style)`` for per-sample weights ``style`` (B, N)."""
        if style.dim() != 2:
            raise ValueError("the compiled path takes per-sample style weights (B, N); use the plain transformer for per-pixel maps")
        out = self._forward(images.to(self.device, torch.float32), style.to(self.device, torch.float32))
        # CUDA graphs reuse their output buffers on the next replay: hand out a copy.
        return out.clone() if self.device.type == "cuda" else out
