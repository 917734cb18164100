"""Reading and writing images the way users expect.

Reading applies the EXIF orientation, composites transparency on white and converts every
mode (grayscale, palette, CMYK, 16-bit) to 8-bit RGB. Writing picks the format from the
file's suffix and is atomic: the image is written to a temporary file beside the target and
renamed over it, so a crash or Ctrl-C never leaves a half-written picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from .files import atomic_path

__all__ = ["ImageLoadError", "load_image", "save_image", "to_tensor", "to_pil", "limit_longer_side", "fit_longer_side", "OUTPUT_FORMATS"]

#: Suffix -> Pillow format for outputs.
OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


class ImageLoadError(ValueError):
    """An image file could not be read; the message names the file and the reason."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image as RGB with its EXIF orientation applied; raise ImageLoadError if unusable."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Composite transparency on white rather than on whatever the hidden pixels hold.
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(canvas, rgba).convert("RGB")
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grayscale: scale to 8 bits instead of clipping at 255.
                arr = np.asarray(im, dtype=np.float64)
                arr = arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0
                return Image.fromarray(arr.round().astype(np.uint8)).convert("RGB")
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{path}: is a folder, not an image") from None
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{path}: refused, too many pixels ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageLoadError(f"{path}: cannot read image ({err})") from None


def save_image(image: Image.Image, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Write ``image`` atomically, in the format its suffix names."""
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}; use one of {', '.join(sorted(OUTPUT_FORMATS))}")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **kwargs)
    return path


def to_tensor(image: Image.Image) -> Tensor:
    """PIL RGB -> (3, H, W) float32 in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)


def to_pil(tensor: Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> PIL RGB (rounded, not truncated)."""
    arr = tensor.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def fit_longer_side(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(height, width) shrunk (never enlarged) so that the longer side is at most ``size``."""
    if size is None or max(height, width) <= size:
        return height, width
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def limit_longer_side(image: Image.Image, size: int | None) -> Image.Image:
    """Shrink (never enlarge) a PIL image so that the longer side is at most ``size``."""
    h, w = fit_longer_side(image.height, image.width, size)
    return image if (w, h) == image.size else image.resize((w, h), Image.Resampling.LANCZOS)
