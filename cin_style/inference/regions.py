"""Style masks in the command line's form, read without PyTorch: ``--mask STYLE=FILE`` and
``--labels FILE --label VALUE=STYLE``.

The masks become per-pixel style weights in :mod:`cin_style.inference.masks`; this module only checks
the options and files and turns a label image into one float mask (an array) per style.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["label_masks", "masks_from_options"]


def label_masks(labels: str | os.PathLike | Image.Image | np.ndarray, mapping: Mapping[int, str]) -> dict[str, np.ndarray]:
    """One mask per style from a label image (palette index or gray level -> style name)."""
    if isinstance(labels, (str, os.PathLike)):
        try:
            with Image.open(labels) as im:
                labels = im.copy()
        except OSError as err:
            raise ValueError(f"{labels}: cannot read the label image ({err})") from None
    if isinstance(labels, Image.Image):
        if labels.mode not in ("P", "L", "1", "I", "I;16"):
            gray = labels.convert("RGB")
            r, g, b = (np.asarray(c) for c in gray.split())
            if not (np.array_equal(r, g) and np.array_equal(g, b)):
                raise ValueError("a label image must be grayscale or palette (one number per pixel), not colour")
            labels = gray.convert("L")
        labels = np.asarray(labels)
    values = np.asarray(labels).astype(np.int64)
    masks: dict[str, np.ndarray] = {}
    for value, name in mapping.items():
        hit = (values == int(value)).astype(np.float32)
        if not hit.any():
            raise ValueError(f"label {value} does not occur in the label image (it holds {np.unique(values).tolist()[:20]})")
        masks[name] = masks.get(name, np.zeros_like(hit)) + hit
    return masks


def _pairs(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{what} takes KEY=VALUE, got {item!r}")
        out.append((key.strip(), value.strip()))
    return out


def masks_from_options(mask: Sequence[str] = (), labels: str | os.PathLike | None = None, label: Sequence[str] = ()) -> dict | None:
    """Masks in the command line's form: ``mask`` items ``STYLE=FILE``, or a ``labels`` image with
    ``label`` items ``VALUE=STYLE`` (a gray level or palette index and its style). Files are checked
    to exist; masks are read when used. None when no mask is given."""
    masks: dict = {}
    for style, file in _pairs(mask, "--mask"):
        if not Path(file).is_file():
            raise FileNotFoundError(f"--mask {style}={file}: no such file")
        masks[style] = file
    if labels is None:
        if label:
            raise ValueError("--label needs --labels FILE")
        return masks or None
    if not Path(labels).is_file():
        raise FileNotFoundError(f"--labels {labels}: no such file")
    mapping = {}
    for value, style in _pairs(label, "--label"):
        if not value.isdigit():
            raise ValueError(f"--label {value}={style}: the label must be a whole number (a gray level or palette index)")
        mapping[int(value)] = style
    if not mapping:
        raise ValueError("--labels needs --label VALUE=STYLE for each label that gets a style")
    return {**masks, **label_masks(labels, mapping)}
