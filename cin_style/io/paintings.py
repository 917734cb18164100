"""Paintings and photos as the losses see them: a painting's frame trimmed and its shorter side
set (the style targets of training, evaluation and optimization alike), and photos as centre
crops (the validation and evaluation transform)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from cin_style.io.images import find_images, load_image

__all__ = ["DEFAULT_STYLE_SIZE", "MAX_ASPECT", "resize_shorter", "fit_shorter", "recorded_style_size", "find_paintings", "load_style_image", "trim_frame", "load_center_crops"]

#: Training photos are trimmed to at most this aspect ratio (centred) before the random crop,
#: so that every photo fits the fixed-size slots of the on-device cache.
MAX_ASPECT = 2


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return image.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0) if new != (w, h) else image


#: Paintings are resized to this shorter side before their Gram targets are taken, unless a config says otherwise.
DEFAULT_STYLE_SIZE = 256


def recorded_style_size(training: Mapping) -> int:
    """The style size a model was trained with, from its training record (the default where it is silent)."""
    return int(training.get("style_size") or DEFAULT_STYLE_SIZE)


def find_paintings(folder: str | os.PathLike, names: Sequence[str], recorded: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Each style's painting in ``folder``: the file name recorded at training (``recorded``: style ->
    file name, as a model file's ``style_files``), else a file named after the style (any image
    suffix). Raises FileNotFoundError naming every style without one."""
    folder = Path(folder)
    files = find_images(folder) if folder.is_dir() else []
    recorded = recorded or {}
    found, missing = {}, []
    for name in names:
        match = [f for f in files if f.name == recorded.get(name)] or [f for f in files if f.stem == name]
        if match:
            found[name] = match[0]
        else:
            missing.append(name)
    if missing:
        looked = ", ".join(recorded.get(n) or f"{n}.*" for n in missing)
        raise FileNotFoundError(f"{folder}: no painting for style(s) {', '.join(missing)} (looked for {looked})")
    return found


def load_style_image(path: str | os.PathLike, style_size: int) -> Tensor:
    """A painting as (3, H, W) in [0, 1], its frame trimmed (:func:`trim_frame`), shorter side
    ``style_size``: how style targets are taken, for training, evaluation and optimization alike."""
    return TF.to_tensor(resize_shorter(trim_frame(load_image(path)), style_size))


def trim_frame(
    image: Image.Image,
    *,
    tolerance: float = 10.0,
    step: float = 40.0,
    max_fraction: float = 0.05,
    edge_lines: int = 5,
    edge_step: float = 30.0,
    edge_inside: int = 6,
) -> Image.Image:
    """``image`` without the frame a scan or a museum photo often leaves along its sides.

    A painting's Gram targets count every pixel, so a black frame (Starry Night's file has a
    6-8 px one) asks the network for a share of pure black, and a network that knows where the
    image ends (through its padding) paints it there, as a frame around every photo. Two kinds
    of frame are trimmed, each side on its own:

    - a **flat band**: lines that are flat (standard deviation along the line below
      ``tolerance``, in 0-255 levels) and of the outermost line's colour, thinner than
      ``max_fraction`` of the image, after which, within three lines, the picture steps away
      (a mean ``step`` levels away, or a line that varies by more than ``step``). A sky or paper
      margin that fades or runs deep is kept. The trimmed lines include that step line, which
      JPEG blurs with the frame;
    - then a **thin edge**: up to ``edge_lines`` outer lines, flat or not, each of whose mean is
      ``edge_step`` levels or more from the median of the ``edge_inside`` lines inside them,
      while those inner lines agree with one another (their means within ``edge_step``). The
      light edge of a print (Benzaiten's top rows are ~220 against ~35 inside), a mat's rim
      (the Librarian's outer 2-3 px step from ~150 to ~50) or unpainted canvas (Starry Night's
      top) is such an edge; a picture rarely changes that much, that close to its side, and
      nowhere else. Trimming a few lines of a real picture by mistake costs nothing visible.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    sides = {  # each side's lines, outermost first
        "top": pixels,
        "bottom": pixels[::-1],
        "left": pixels.transpose(1, 0, 2),
        "right": pixels.transpose(1, 0, 2)[::-1],
    }
    depth = {}
    for side, lines in sides.items():
        limit = int(max_fraction * len(lines))
        means = lines[: limit + edge_lines + edge_inside + 3].mean(axis=(1, 2))
        spreads = lines[: limit + 3].std(axis=1).mean(axis=1)
        band = 0
        while band < limit and spreads[band] < tolerance and abs(means[band] - means[0]) < tolerance:
            band += 1
        depth[side] = 0
        if 0 < band < limit:
            colour = means[:band].mean()
            for j in range(band, min(band + 3, len(spreads))):
                if abs(means[j] - colour) > step or spreads[j] > step:
                    depth[side] = j + 1
                    break
        depth[side] += _edge_depth(means[depth[side] :], edge_lines, edge_step, edge_inside)
    if not any(depth.values()):
        return image
    return image.crop((depth["left"], depth["top"], width - depth["right"], height - depth["bottom"]))


def _edge_depth(means: np.ndarray, lines: int, step: float, inside: int) -> int:
    """How many of the outer ``lines`` (line means, outermost first) form a thin edge: the most
    ``k`` for which each of the first ``k`` is ``step`` from the median of the ``inside`` lines
    after them, and those agree within ``step``."""
    for k in range(lines, 0, -1):
        inner = means[k : k + inside]
        if len(inner) < inside or np.ptp(inner) >= step:
            continue
        if np.all(np.abs(means[:k] - np.median(inner)) >= step):
            return k
    return 0


def fit_shorter(image: Image.Image, size: int) -> Image.Image:
    """``image`` resized to the shorter side ``size`` and trimmed (centred) to at most :data:`MAX_ASPECT`."""
    image = resize_shorter(image, size)
    longest = size * MAX_ASPECT
    if image.width > longest or image.height > longest:
        image = TF.center_crop(image, [min(image.height, longest), min(image.width, longest)])
    return image


def load_center_crops(files: Sequence[Path], size: int) -> Tensor:
    """Photos as (P, 3, size, size): shorter side ``size``, centre crop (the validation transform)."""
    return torch.stack([TF.to_tensor(TF.center_crop(fit_shorter(load_image(f), size), [size, size])) for f in files])
