"""Reading and writing images the way users expect.

Reading applies the EXIF orientation, composites transparency on white and converts every
mode (grayscale, palette, CMYK, 16-bit) to 8-bit RGB. Writing picks the format from the
file's suffix and is atomic: the image is written to a temporary file beside the target and
renamed over it, so a crash or Ctrl-C never leaves a half-written picture.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # PyTorch is imported where tensors are made: the ONNX path reads and writes images without it
    from torch import Tensor

from cin_style.io.files import atomic_path, check_output

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageLoadError",
    "OUTPUT_FORMATS",
    "collect_images",
    "find_images",
    "fit_longer_side",
    "limit_longer_side",
    "load_image",
    "save_image",
    "failure_line",
    "to_pil",
    "to_tensor",
    "to_uint8",
    "plan_outputs",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file below ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(image file, its path relative to an output folder) for files and folders (searched
    recursively, keeping their structure); FileNotFoundError for an input that does not exist."""
    pairs = []
    for item in map(Path, inputs):
        if item.is_dir():
            pairs += [(f, f.relative_to(item)) for f in find_images(item)]
        elif item.exists():
            pairs.append((item, Path(item.name)))
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return pairs


def plan_outputs(inputs: Sequence[str | os.PathLike], output: str | os.PathLike) -> tuple[list[tuple[Path, Path]], bool]:
    """The (image file, output file) pairs for writing ``inputs`` (files and folders) to ``output``,
    and whether that is folder mode: several inputs, a folder among them, or an existing folder
    as the output (as ``cp`` decides). The output is checked before any work (a folder, or a
    file name with an image suffix, in a writable place)."""
    pairs, output = collect_images(inputs), Path(output)
    folder = len(pairs) != 1 or any(Path(p).is_dir() for p in inputs) or output.is_dir()
    check_output(output, folder=folder, suffixes=OUTPUT_FORMATS)
    return ([(src, output / rel) for src, rel in pairs] if folder else [(pairs[0][0], output)]), folder


#: Images with more pixels than this are refused before decoding (a small file can claim
#: 60000x60000 pixels and ask for 10 GB); 200 megapixels admits large scans.
DEFAULT_MAX_PIXELS = 200_000_000

_pillow_limit_lock = threading.Lock()

#: Suffix -> Pillow format for outputs.
OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF"}


class ImageLoadError(ValueError):
    """An image file could not be read; the message names the file and the reason."""


@contextmanager
def _own_pixel_limit():
    """Let Pillow open any header; :func:`load_image` applies its own, adjustable limit.

    Pillow's global MAX_IMAGE_PIXELS would otherwise refuse (or warn about) images that the
    user allowed with ``max_pixels``; it is restored afterwards, so other code is unaffected.
    """
    with _pillow_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def load_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image as RGB with its EXIF orientation applied; raise ImageLoadError if unusable.

    Images of more than ``max_pixels`` pixels (``None``: no limit) are refused from their
    header, before any decoding. Of an animated image (GIF, APNG, WebP) the first frame is
    used, with a warning.
    """
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
        with _own_pixel_limit():
            im = Image.open(path)
        with im:
            pixels = im.width * im.height
            if max_pixels is not None and pixels > max_pixels:
                raise ImageLoadError(
                    f"{path}: refused, {im.width}x{im.height} is {pixels:,} pixels, more than the limit of "
                    f"{max_pixels:,} (a decompression bomb?); raise it with --max-pixels if the image is genuine"
                )
            if getattr(im, "is_animated", False):
                warnings.warn(f"{path}: animated image with {im.n_frames} frames; using the first frame", stacklevel=2)
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
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image Pillow can read (unknown or damaged format)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        if isinstance(err, ImageLoadError):
            raise
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


def to_array(image: Image.Image) -> np.ndarray:
    """PIL RGB -> (3, H, W) float32 in [0, 1], as a NumPy array."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).astype(np.float32)
    array /= 255  # in place: a 12-megapixel photo is 144 MB per float copy
    return array


def array_to_pil(array: np.ndarray) -> Image.Image:
    """(3, H, W) in [0, 1], as a NumPy array -> PIL RGB (rounded, not truncated, as :func:`to_pil`)."""
    return Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0), "RGB")


def to_tensor(image: Image.Image) -> Tensor:
    """PIL RGB -> (3, H, W) float32 in [0, 1]."""
    import torch

    return torch.from_numpy(to_array(image))


def to_uint8(tensor: Tensor) -> Tensor:
    """Images in [0, 1] -> uint8 in [0, 255], rounded (not truncated), same shape."""
    import torch

    # A float copy of a band of rows at a time, then in place: a 12-megapixel photo is 144 MB per
    # float copy, and its band of 256 rows 12 MB.
    tensor = tensor.detach()
    if tensor.dim() < 2:
        return tensor.float().clamp(0, 1).mul_(255).round_().to(torch.uint8)
    out = torch.empty(tensor.shape, dtype=torch.uint8, device=tensor.device)
    for top in range(0, tensor.shape[-2], 256):
        band = tensor[..., top : top + 256, :]
        out[..., top : top + 256, :] = band.float().clamp(0, 1).mul_(255).round_()
    return out


def to_pil(tensor: Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> PIL RGB (rounded, not truncated)."""
    return Image.fromarray(to_uint8(tensor).permute(1, 2, 0).cpu().numpy(), "RGB")


def failure_line(path: str | os.PathLike, message: str) -> str:
    """One line about a file that failed: ``message``, prefixed with the path unless it names it already."""
    return message if str(path) in message else f"{path}: {message}"


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
