"""Standalone model files: safetensors weights plus JSON metadata, never a pickle.

Layout of a ``.safetensors`` model file:

* tensors: the :class:`StyleTransformer` state dict (``encoder.0.conv.weight``, ...,
  ``*.norm.gamma`` / ``*.norm.beta`` tables of shape (num_styles, C), ``photo.gain`` of shape
  (num_styles, 3)), float32 or float16;
* metadata (string to string, as safetensors requires):

  ``format``          ``"cin-style"``
  ``format_version``  ``"2"`` (version 1 files, from before the photo skip, have no
                      ``photo.gain``: they are read with gains of 0, which is what they computed)
  ``architecture``    JSON of :class:`TransformerConfig` (``num_styles``, ``width``, ``num_residual_blocks``)
  ``styles``          JSON list of style names, in the order of the gamma/beta rows
  ``training``        JSON summary of how the network was trained (steps, loss weights, ...)
  ``credits``         optional JSON list, one object per style (title, artist, year, licence)

Lightning checkpoints (``.ckpt``) are read as well, always with ``torch.load(weights_only=True)``
so that a crafted file cannot run code.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cin_style.io.files import atomic_path
from cin_style.network.transformer import StyleTransformer, TransformerConfig

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "LoadedModel", "credits_from_manifest", "convert_model", "read_model", "write_model"]

FORMAT = "cin-style"
FORMAT_VERSION = 2

#: Tensors a file of an older format version lacks, and the value that gives its old behaviour.
_ADDED_IN = {"photo.gain": (2, 0.0)}


class ModelFileError(ValueError):
    """A model file is missing, unreadable, unsafe or inconsistent; the message says which."""


@dataclass
class LoadedModel:
    transformer: StyleTransformer
    styles: list[str]
    training: dict[str, Any] = field(default_factory=dict)
    credits: list[dict[str, Any]] | None = None


def write_model(
    path: str | os.PathLike,
    transformer: StyleTransformer,
    styles: list[str],
    *,
    training: dict[str, Any] | None = None,
    credits: list[dict[str, Any]] | None = None,
    half: bool = False,
) -> Path:
    """Write a model file atomically: a crash mid-write leaves any previous file intact. The format
    follows the suffix: ``.onnx`` writes one ONNX graph for every style and blend
    (:func:`cin_style.io.export.export_onnx`), anything else the safetensors layout above."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if half:
            raise ValueError("ONNX files are written in float32 (what onnxruntime runs fastest on a CPU); drop --half")
        from cin_style.io.export import export_onnx

        return export_onnx(path, LoadedModel(transformer, list(styles), dict(training or {}), credits))
    if len(styles) != transformer.num_styles:
        raise ValueError(f"{len(styles)} style names for a network with {transformer.num_styles} styles")
    if credits is not None and len(credits) != len(styles):
        raise ValueError(f"{len(credits)} credits for {len(styles)} styles")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in transformer.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps(transformer.config.to_dict()),
        "styles": json.dumps(list(styles)),
        "training": json.dumps(training or {}),
    }
    if credits is not None:
        metadata["credits"] = json.dumps(credits)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _read_safetensors(path: Path) -> LoadedModel:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable safetensors file ({err})") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a cin-style model (metadata format={meta.get('format')!r})")
    try:
        version = int(meta.get("format_version", "?"))
    except ValueError:
        raise ModelFileError(f"{path}: bad format_version {meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} is newer than this cin-style understands ({FORMAT_VERSION}); upgrade cin-style"
        )
    try:
        config = TransformerConfig(**json.loads(meta["architecture"]))
        styles = json.loads(meta["styles"])
        training = json.loads(meta.get("training", "{}"))
        credits = json.loads(meta["credits"]) if "credits" in meta else None
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: broken metadata ({type(err).__name__}: {err})") from None
    if not isinstance(styles, list) or len(styles) != config.num_styles:
        raise ModelFileError(f"{path}: metadata lists {len(styles) if isinstance(styles, list) else '?'} styles, architecture says {config.num_styles}")
    return _build(path, config, styles, tensors, training, credits, version=version)


def _read_checkpoint(path: Path) -> LoadedModel:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0][:200]
        raise ModelFileError(f"{path}: refused: the checkpoint holds objects other than tensors and plain data ({first})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ModelFileError(f"{path}: not a cin-style Lightning checkpoint (no state_dict/hyper_parameters)")
    hp = ckpt["hyper_parameters"]
    styles = list(hp.get("style_names", []))
    defaults = TransformerConfig(num_styles=len(styles))  # absent keys: the architecture's own defaults
    width, blocks = hp.get("width", defaults.width), hp.get("num_residual_blocks", defaults.num_residual_blocks)
    config = TransformerConfig(num_styles=len(styles), width=float(width), num_residual_blocks=int(blocks))
    tensors = {k[len("transformer.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("transformer.")}
    loss = hp.get("loss") or {}
    training = {
        "steps": int(ckpt.get("global_step", 0)),
        "lr": hp.get("lr"),
        **{k: loss[k] for k in ("content_weight", "style_weight", "tv_weight", "content_layers", "style_layers", "pooling") if k in loss},
        **({"style_multipliers": list(hp["style_multipliers"])} if hp.get("style_multipliers") is not None else {}),
        **({k: loss[k] for k in ("balance", "balance_photos", "balance_steps", "balance_size") if k in loss} if loss.get("balance", "none") != "none" else {}),
        **({"balance_reference": dict(hp["balance_reference"])} if hp.get("balance_reference") else {}),
        **dict(ckpt.get("cin_style_data") or {}),  # image_size, style_size, style_files (cin_style.training.train.DataRecord)
    }
    # A checkpoint has no format version: one from before a tensor was added simply lacks it.
    return _build(path, config, styles, tensors, training, None, version=None)


def _build(
    path: Path, config: TransformerConfig, styles: list, tensors: dict[str, Tensor], training: dict, credits, *, version: int | None
) -> LoadedModel:
    if config.num_styles < 1:
        raise ModelFileError(f"{path}: the model has no styles")
    transformer = StyleTransformer(**config.to_dict())
    expected = transformer.state_dict()
    for key, (added, value) in _ADDED_IN.items():
        if key not in tensors and (version is None or version < added):
            tensors[key] = torch.full_like(expected[key], value)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tensors[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(tensors[k].shape)}, the architecture needs {tuple(expected[k].shape)}")
        raise ModelFileError(f"{path}: tensors do not match the metadata: {'; '.join(parts)}")
    transformer.load_state_dict({k: v.float() for k, v in tensors.items()})
    return LoadedModel(transformer.eval(), [str(s) for s in styles], training, credits)


def read_model(path: str | os.PathLike) -> LoadedModel:
    """Read a ``.safetensors`` model file or a Lightning ``.ckpt``; raise ModelFileError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header. Checked first:
    # the length's first byte may be anything, including a pickle's 0x80.
    looks_safetensors = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size
    if path.suffix == ".safetensors" or (looks_safetensors and path.suffix not in (".ckpt", ".pt", ".pth")):
        return _read_safetensors(path)
    # A zip (torch.save) or a raw pickle is a checkpoint; anything else is tried as safetensors for its error message.
    if path.suffix in (".ckpt", ".pt", ".pth") or head[:2] == b"PK" or head[:1] == b"\x80":
        return _read_checkpoint(path)
    return _read_safetensors(path)


def convert_model(source: str | os.PathLike, output: str | os.PathLike, *, credits: str | os.PathLike | None = None, half: bool = False) -> LoadedModel:
    """A checkpoint or model file written again as ``output`` (``.safetensors`` or ``.onnx``, as
    :func:`write_model`), with each painting's credit from the MANIFEST.csv ``credits`` where given
    (else the credits it has). Returns what was written."""
    loaded = read_model(source)
    if credits is not None:
        loaded.credits = credits_from_manifest(credits, loaded.styles, loaded.training)
    write_model(output, loaded.transformer, loaded.styles, training=loaded.training, credits=loaded.credits, half=half)
    return loaded


def credits_from_manifest(manifest: str | os.PathLike, styles: list[str], training: dict) -> list[dict[str, str]]:
    """Title, artist, year and licence of each style's painting, from a MANIFEST.csv
    (columns path, title, artist_or_author, year, license, source). A style is matched by the
    painting file recorded at training (``training["style_files"]``), else by the file's stem;
    the identity row has no painting and gets an entry of its own."""
    import csv

    from cin_style.network.styles import IDENTITY

    manifest = Path(manifest)
    if not manifest.is_file():
        raise ModelFileError(f"credits {manifest}: no such file")
    with open(manifest, newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f) if r.get("path")}
    files = training.get("style_files") or {}
    credits, missing = [], []
    for name in styles:
        if name == IDENTITY:
            credits.append({"style": name, "title": "the photo itself (strength 0)", "artist": "", "year": "", "license": "", "source": ""})
            continue
        row = rows.get(files.get(name, "")) or next((r for fname, r in rows.items() if Path(fname).stem == name), None)
        if row is None:
            missing.append(name)
            continue
        credits.append({
            "style": name, "title": row.get("title", ""), "artist": row.get("artist_or_author", ""),
            "year": row.get("year", ""), "license": row.get("license", ""), "source": row.get("source", ""),
        })  # fmt: skip
    if missing:
        raise ModelFileError(f"credits {manifest}: no entry for style(s) {', '.join(missing)}")
    return credits
