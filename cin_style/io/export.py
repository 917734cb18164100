"""ONNX export: one graph for every style and blend.

A one-style network exports one file per style; a CIN network does better: the style weights
are an input of the graph, so one file serves every style, every blend and the strength dial.
The graph is :meth:`StyleTransformer.forward <cin_style.network.transformer.StyleTransformer.forward>` itself,
traced by PyTorch's ``torch.export`` based exporter (``torch.onnx.export(dynamo=True)``) with
dynamic batch, height and width: its padding to a multiple of 4 is arithmetic on the input's
size, so any size from ``StyleTransformer.min_size`` up runs, odd sizes included (smaller
images are padded by the runtime first, :meth:`cin_style.inference.onnx_model.OnnxStyleModel.run`).
The file is read without PyTorch by :mod:`cin_style.inference.onnx_model`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cin_style.io.files import atomic_path
from cin_style.io.onnx_format import INPUTS, METADATA_KEY, ONNX_FORMAT, ONNX_FORMAT_VERSION, OUTPUT
from cin_style.network.transformer import StyleTransformer

if TYPE_CHECKING:  # modelfile writes .onnx files through export_onnx; export needs only the type
    from cin_style.io.modelfile import LoadedModel

__all__ = ["OPSET", "export_onnx", "weights_digest"]

#: The ONNX opset written: the exporter's default in PyTorch 2.14, supported by current onnxruntime and onnxruntime-web.
OPSET = 18


def weights_digest(network: torch.nn.Module) -> str:
    """SHA-256 of a network's weights as float32 (names and values, in name order): an ONNX file
    records the digest of the weights it was exported from, so that a stale graph is never used
    in place of a model file (:meth:`cin_style.inference.style_model.StyleModel.load`); the evaluation cache names
    the VGG-16 it used by it (:class:`cin_style.quality.evaluate.OptimizedCache`)."""
    digest = hashlib.sha256()
    for name, value in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_onnx(path: str | os.PathLike, model: LoadedModel) -> Path:
    """Write ``model``'s network as one float32 ONNX file (weights inside), inputs ``image`` (B, 3, H, W)
    and ``style`` (B, N), output ``stylized``; its style names, training record and credits go
    into ``metadata_props[METADATA_KEY]`` as JSON. Checked with ``onnx.checker`` before it is
    renamed into place."""
    try:
        import onnx
    except ImportError:
        raise ValueError('ONNX export needs the onnx and onnxscript packages: pip install "cin-style[onnx]"') from None
    path = Path(path)
    styles = list(model.styles)
    net = StyleTransformer(**model.transformer.config.to_dict())
    net.load_state_dict({k: v.float() for k, v in model.transformer.state_dict().items()})
    net.eval()
    n = net.num_styles
    example = (torch.rand(1, 3, 64, 64), torch.full((1, n), 1.0 / n))
    batch = torch.export.Dim("batch", min=1)
    height, width = (torch.export.Dim(name, min=StyleTransformer.min_size) for name in ("height", "width"))
    with warnings.catch_warnings():  # the exporter's notes on axis names and its progress lines are for its developers
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net, example, input_names=list(INPUTS), output_names=[OUTPUT], opset_version=OPSET, dynamo=True, verbose=False,
            dynamic_shapes={"images": {0: batch, 2: height, 3: width}, "style": {0: batch}},
        )  # fmt: skip
    record = {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "styles": styles,
        "architecture": net.config.to_dict(),
        "weights_sha256": weights_digest(net),
        "training": model.training or {},
        "credits": model.credits,
        "min_size": StyleTransformer.min_size,
        "size_multiple": StyleTransformer.size_multiple,
    }
    graph = program.model_proto
    onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(record)})
    graph.doc_string = f"cin-style: {n} styles ({', '.join(styles[:4])}{', ...' if n > 4 else ''}); inputs image (B,3,H,W) in [0,1], style (B,{n}) blend weights"
    onnx.checker.check_model(graph, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save_model(graph, str(tmp))
    return path
