"""What runs a whole-image pass of a loaded model: one engine, chosen in one place.

Every engine is a callable with one signature, ``engine(images, weights) -> images``: a float32
batch (B, 3, H, W) in [0, 1] on the model's device and per-image blend weights (B, N), to the
painted batch of the same shape. :class:`~cin_style.inference.style_model.StyleModel` holds one
in its ``engine`` slot and knows nothing of what is inside; :func:`choose_engine` is the only
code that decides, from a name (:data:`ENGINES`), the device and the CPU, which one that is.
``benchmarks/RESULTS.md`` has the measurements behind ``"auto"``.

The engines differ only in how the same network is computed:

* ``torch``: PyTorch's direct float32 convolutions, the exact reference;
* ``nnpack``: float32 with NNPACK's Winograd and FFT convolutions where they apply
  (:mod:`cin_style.network.fastconv`; relative error ~1e-6), 1.3-3x faster on an AVX2 CPU;
* ``bf16``: bfloat16 autocast on a CPU that multiplies bfloat16 natively (AMX, AVX-512 BF16);
* ``compiled``: a compiled bfloat16 channels-last copy (:class:`~cin_style.network.fast.CompiledTransformer`), for GPUs;
* ``onnx``: the ONNX graph exported from the same weights, through onnxruntime (CPU).

Work that is not one whole-image pass (exact tiles, per-pixel style maps, the optimization
method) always runs the PyTorch network itself; :attr:`Engine.direct` says whether it should
use the direct convolutions there too (the ``torch`` engine) or may use NNPACK's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from cin_style.inference.onnx_model import OnnxModelError, OnnxStyleModel
from cin_style.inference.stylizer import ENGINES
from cin_style.io.modelfile import ModelFileError
from cin_style.network import fastconv
from cin_style.network.fast import CompiledTransformer
from cin_style.network.transformer import StyleTransformer

__all__ = ["ENGINES", "Engine", "TorchEngine", "Bf16Engine", "CompiledEngine", "OnnxEngine", "choose_engine"]

class Engine:
    """A whole-image pass: ``engine(images (B, 3, H, W), weights (B, N)) -> (B, 3, H, W)``."""

    #: The engine's name in :data:`ENGINES` (what :func:`choose_engine` rebuilds it from).
    name: str = ""
    #: Whether the PyTorch passes outside the engine (tiles, regions) use direct convolutions only.
    direct: bool = False
    #: Whether each new batch size costs a compilation (so a short last batch is better padded).
    fixed_batch: bool = False

    def __call__(self, images: Tensor, weights: Tensor) -> Tensor:
        raise NotImplementedError

    def on(self, transformer: StyleTransformer) -> Engine | None:
        """The same engine, with the same settings, on another network (a style added); None
        where it cannot be (an exported graph holds the old weights)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class TorchEngine(Engine):
    """The PyTorch network in float32: with ``direct``, PyTorch's direct convolutions only (the
    exact reference, ``"torch"``); without, NNPACK's where they apply (``"nnpack"``)."""

    def __init__(self, transformer: StyleTransformer, *, direct: bool) -> None:
        self.transformer = transformer
        self.direct = direct
        self.name = "torch" if direct else "nnpack"

    def __call__(self, images: Tensor, weights: Tensor) -> Tensor:
        with fastconv.direct(self.direct):
            return self.transformer(images, weights)

    def on(self, transformer: StyleTransformer) -> Engine:
        return TorchEngine(transformer, direct=self.direct)


class Bf16Engine(Engine):
    """The PyTorch network under bfloat16 autocast on a CPU (oneDNN's AMX or AVX-512 BF16
    convolutions; about 58 dB PSNR against float32 at 512 px). NNPACK would compute float32
    inside autocast, so its convolutions are switched off for the pass; tiles and regions keep
    float32 with NNPACK."""

    name = "bf16"

    def __init__(self, transformer: StyleTransformer) -> None:
        self.transformer = transformer

    def __call__(self, images: Tensor, weights: Tensor) -> Tensor:
        with fastconv.direct(), torch.autocast("cpu", dtype=torch.bfloat16):
            return self.transformer(images, weights).float()

    def on(self, transformer: StyleTransformer) -> Engine:
        return Bf16Engine(transformer)


class CompiledEngine(Engine):
    """A compiled, bfloat16, channels-last copy of the network (:class:`CompiledTransformer`):
    each image size (and batch size) compiles once; every style and blend reuses the graph."""

    name = "compiled"
    fixed_batch = True

    def __init__(self, transformer: StyleTransformer, **options) -> None:
        #: :class:`CompiledTransformer`'s settings (dtype, channels_last, compile, mode), kept for :meth:`on`.
        self.options = options
        self.compiled = CompiledTransformer(transformer, **options)

    def __call__(self, images: Tensor, weights: Tensor) -> Tensor:
        return self.compiled(images, weights)

    def on(self, transformer: StyleTransformer) -> Engine:
        return CompiledEngine(transformer, **self.options)


class OnnxEngine(Engine):
    """The ONNX graph of the same weights through onnxruntime, on CPU tensors."""

    name = "onnx"

    def __init__(self, runtime: OnnxStyleModel) -> None:
        self.runtime = runtime

    def __call__(self, images: Tensor, weights: Tensor) -> Tensor:
        out = self.runtime.run(images.detach().cpu().float().contiguous().numpy(), weights.detach().cpu().float().contiguous().numpy())
        return torch.from_numpy(out).to(images.device)

    def on(self, transformer: StyleTransformer) -> None:
        return None


def _onnx_twin(source: Path, transformer: StyleTransformer, styles: Sequence[str], *, required: bool) -> OnnxStyleModel | None:
    """The ONNX graph beside ``source`` (same name, ``.onnx``) if it was exported from these very
    weights and style names; with ``required``, a one-line error instead of None."""
    from cin_style.io.export import weights_digest

    twin = source.with_suffix(".onnx")
    if not twin.is_file():
        problem = f"no ONNX graph beside {source}; make one with: cin-style export {source} -o {twin}"
    else:
        try:
            runtime = OnnxStyleModel.load(twin)
        except OnnxModelError as err:
            problem = str(err)
        else:
            if runtime.record.get("weights_sha256") == weights_digest(transformer) and runtime.styles == list(styles):
                return runtime
            problem = f"{twin} was exported from other weights than {source}; export it again: cin-style export {source} -o {twin}"
            if not required:
                warnings.warn(f"{problem} (running PyTorch meanwhile)", stacklevel=4)
    if required:
        raise ModelFileError(problem)
    return None


def choose_engine(
    name: str, transformer: StyleTransformer, *, styles: Sequence[str], device: torch.device, source: str | Path | None = None
) -> Engine:
    """The engine ``name`` (:data:`ENGINES`) for ``transformer`` on ``device``; ``source`` is the
    model file, beside which the ``onnx`` engine finds its graph.

    ``"auto"``: on a GPU plain float32 PyTorch; on a CPU with native bfloat16 ``bf16``; elsewhere
    ``nnpack``, or on a PyTorch without NNPACK the ONNX graph beside the model file when it is there
    (else ``torch``). Explicit names are honoured or refused in one line (``bf16`` and ``onnx``
    run on the CPU; ``onnx`` needs its graph, from these very weights).
    """
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    cpu = device.type == "cpu"
    if name == "auto":
        if not cpu:
            return TorchEngine(transformer, direct=True)
        if fastconv.native_bf16():
            return Bf16Engine(transformer)
        if fastconv.available():
            return TorchEngine(transformer, direct=False)
        runtime = _onnx_twin(Path(source), transformer, styles, required=False) if source is not None else None
        return OnnxEngine(runtime) if runtime is not None else TorchEngine(transformer, direct=True)
    if name in ("bf16", "onnx") and not cpu:
        raise ModelFileError(f"the {name} engine runs on the CPU, not on {device}; use --engine auto there")
    if name == "torch":
        return TorchEngine(transformer, direct=True)
    if name == "nnpack":
        return TorchEngine(transformer, direct=False)
    if name == "bf16":
        return Bf16Engine(transformer)
    if name == "compiled":
        return CompiledEngine(transformer)
    if source is None:
        raise ModelFileError("the onnx engine runs the graph exported beside a model file: load the model from its file")
    return OnnxEngine(_onnx_twin(Path(source), transformer, styles, required=True))
