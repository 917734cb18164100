"""Stride-1 convolutions by Winograd and FFT on the CPU (NNPACK), for inference.

PyTorch's default CPU convolution (oneDNN) computes every multiply-add of a convolution. For the
layers of this network that is wasteful: its 3x3 stride-1 convolutions (the residual blocks,
most of the work) can be computed by Winograd's minimal filtering, F(6x6, 3x3),
with about a fifth of the multiplications (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", CVPR 2016), and its 9x9 first and last layers by FFT. NNPACK, which PyTorch's
CPU builds include, implements both; on a 2-core AVX2 CPU it runs this network's stride-1
layers 1.3 to 3 times faster than oneDNN (``benchmarks/RESULTS.md``).

The results are float32 but not bit-identical to the direct convolution: the transforms round
differently, a relative difference around 1e-6 per layer, far below one 8-bit level of the
output (PSNR against the direct path > 80 dB, ``tests/test_fastconv.py``). So this path is used
only where no gradient is needed, on float32 CPU tensors, outside ``torch.compile`` and export
(whose graphs must stay plain ``conv2d``), and it can be switched off (:func:`direct`;
``--engine torch`` on the command line) when exact float32 PyTorch is wanted. Strided layers
always use oneDNN: NNPACK has no fast algorithm for them. So do small maps (under
``NNPACK_MIN_PIXELS``), where NNPACK's transforms cost more than they save.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["conv2d", "available", "direct", "enabled", "eager_inference", "native_bf16"]

# A context variable, not a global: the app stylizes in worker threads, each with its own model's setting.
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("cin_style_fast_convolutions", default=True)


@functools.cache
def available() -> bool:
    """Whether this PyTorch has NNPACK and it initializes on this CPU (it needs AVX2 on x86)."""
    try:
        return bool(torch._nnpack_available())  # also initializes NNPACK, which its convolutions need first
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX-512 BF16). There oneDNN's
    bfloat16 convolutions beat any float32 algorithm, NNPACK's included, which has no AVX-512
    kernels; elsewhere bfloat16 autocast is emulated and many times slower than float32."""
    cpu = torch.cpu
    checks = (getattr(cpu, "_is_amx_tile_supported", None), getattr(cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and bool(check()) for check in checks)


def enabled() -> bool:
    """Whether :func:`conv2d` may use NNPACK (on unless inside :func:`direct`)."""
    return _enabled.get() and available()


@contextlib.contextmanager
def direct(active: bool = True) -> Iterator[None]:
    """Within this block (if ``active``) every convolution is PyTorch's direct one: exact float32 PyTorch."""
    token = _enabled.set(False) if active else None
    try:
        yield
    finally:
        if token is not None:
            _enabled.reset(token)


#: Output maps smaller than this (pixels) use the direct convolution: below it NNPACK's transforms
#: cost more than they save (measured per layer on this project's CPU; ``benchmarks/RESULTS.md``).
NNPACK_MIN_PIXELS = 96 * 96


def eager_inference(*tensors: Tensor) -> bool:
    """Whether the tensors are computed eagerly and need no gradient: no autograd through them,
    not inside ``torch.compile``, tracing or ONNX export. Only then may an operation take a
    shortcut its graph could not hold (NNPACK here, in-place activations and strided copies
    in :mod:`cin_style.network.transformer` and :mod:`cin_style.network.phase`)."""
    return (
        not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
    )


def _nnpack_applies(x: Tensor, weight: Tensor, stride: int) -> bool:
    return (
        stride == 1
        and x.dim() == 4
        and (x.shape[-2] - weight.shape[-2] + 1) * (x.shape[-1] - weight.shape[-1] + 1) >= NNPACK_MIN_PIXELS
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        # Under CPU autocast the caller asked for bfloat16 convolutions (training's validation
        # under bf16-mixed): a float32 NNPACK result there would meet bf16 gamma/beta.
        and not torch.is_autocast_enabled("cpu")
        and eager_inference(x, weight)
        and enabled()
    )


def conv2d(x: Tensor, weight: Tensor, *, stride: int = 1) -> Tensor:
    """``F.conv2d(x, weight, stride=stride)`` without padding or bias; by NNPACK where it applies
    (see the module), by PyTorch's direct convolution elsewhere."""
    if _nnpack_applies(x, weight, stride):
        bias = weight.new_zeros(weight.shape[0])  # NNPACK's kernel requires one
        return torch._nnpack_spatial_convolution(x.contiguous(), weight.contiguous(), bias, [0, 0], [1, 1])
    return F.conv2d(x, weight, stride=stride)
