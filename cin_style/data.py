"""Images in, tensors out: content photos for training and validation, and style paintings.

Content photos (Johnson et al. 2016 train on COCO; any folder of photos works) are resized
so that the shorter side is ``image_size`` and randomly cropped to a square of that size,
with horizontal flips. The validation set is fixed: the first ``num_val`` images of the
validation folder in name order, centre-cropped. Style paintings are loaded once, resized
so that their shorter side is ``style_size``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .images import ImageLoadError, load_image

__all__ = [
    "IMAGE_SUFFIXES",
    "StyleSpec",
    "ContentImages",
    "StyleTransferDataModule",
    "find_images",
    "load_center_crops",
    "load_style_image",
    "load_style_specs",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file below ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return image.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0) if new != (w, h) else image


def load_style_image(path: str | os.PathLike, style_size: int) -> Tensor:
    """A painting as (3, H, W) in [0, 1], shorter side ``style_size``: how style targets are taken."""
    return TF.to_tensor(resize_shorter(load_image(path), style_size))


def load_center_crops(files: Sequence[Path], size: int) -> Tensor:
    """Photos as (P, 3, size, size): shorter side ``size``, centre crop (the validation transform)."""
    dataset = ContentImages(files, image_size=size, train=False)
    return torch.stack([dataset._load(i) for i in range(len(files))])


@dataclass(frozen=True)
class StyleSpec:
    """One style: its name (as users select it), the painting's file and a loss multiplier."""

    name: str
    path: Path
    weight: float = 1.0


def load_style_specs(
    styles: Sequence[Mapping] | None = None, style_dir: str | os.PathLike | None = None
) -> list[StyleSpec]:
    """Styles from an explicit list (name, path, optional weight) or every image in a folder.

    With a folder, a style's name is the file's stem. Names must be unique.
    """
    specs: list[StyleSpec] = []
    if styles is not None and len(styles) == 0 and style_dir is None:
        return []  # said explicitly: no paintings (an identity row alone, for example)
    if styles:
        for entry in styles:
            if "path" not in entry:
                raise ValueError(f"style entry {dict(entry)} has no path")
            path = Path(entry["path"])
            specs.append(StyleSpec(str(entry.get("name") or path.stem), path, float(entry.get("weight", 1.0))))
    elif style_dir is not None:
        specs = [StyleSpec(p.stem, p) for p in find_images(style_dir)]
    if not specs:
        raise ValueError("no styles: give data.styles (a list of name/path entries) or data.style_dir (a folder)")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate style names: {', '.join(dupes)}")
    for s in specs:
        if s.weight < 0 or s.weight != s.weight:
            raise ValueError(f"style {s.name}: weight must be a non-negative number, got {s.weight}")
        if not s.path.is_file():
            raise FileNotFoundError(f"style {s.name}: painting {s.path} does not exist")
    return specs


class ContentImages(Dataset):
    """Content photos as (3, size, size) float tensors in [0, 1].

    A file that cannot be decoded is skipped: it is reported once in a warning and another
    image is returned in its place, so one broken photo never stops a long training run.
    """

    def __init__(self, files: Sequence[Path], *, image_size: int, train: bool) -> None:
        if not files:
            raise ValueError("no content images")
        self.files = list(files)
        self.image_size = image_size
        self.train = train
        self.broken: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> Tensor:
        image = resize_shorter(load_image(self.files[index]), self.image_size)
        s = self.image_size
        if self.train:
            top = int(torch.randint(0, image.height - s + 1, ()).item())
            left = int(torch.randint(0, image.width - s + 1, ()).item())
            image = image.crop((left, top, left + s, top + s))
            if torch.rand(()) < 0.5:
                image = ImageOps.mirror(image)
        else:
            image = TF.center_crop(image, [s, s])
        return TF.to_tensor(image)

    def __getitem__(self, index: int) -> Tensor:
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if i in self.broken:
                continue
            try:
                return self._load(i)
            except ImageLoadError as err:
                self.broken.add(i)
                warnings.warn(f"skipping content image: {err}", stacklevel=2)
        raise RuntimeError("none of the content images can be read")


def _usable(files: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Split files into those whose header opens as an image and the reasons for the others."""
    good, bad = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                im.size  # noqa: B018 - the header is enough to reject non-images cheaply
            good.append(f)
        except (OSError, ValueError, SyntaxError) as err:
            bad.append(f"{f}: {err}")
    return good, bad


class StyleTransferDataModule(L.LightningDataModule):
    """Content photos for training and validation, and the style paintings.

    The style list is read at construction, so that the model can be built with the style
    names before any image is decoded.
    """

    def __init__(
        self,
        *,
        content_dir: str,
        val_dir: str | None = None,
        styles: Sequence[Mapping] | None = None,
        style_dir: str | None = None,
        image_size: int = 256,
        style_size: int = 256,
        batch_size: int = 16,
        num_val: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        self.content_dir = Path(content_dir)
        self.val_dir = Path(val_dir) if val_dir else None
        self.style_specs = load_style_specs(styles, style_dir)
        self.image_size = image_size
        self.style_size = style_size
        self.batch_size = batch_size
        self.num_val = num_val
        self.num_workers = num_workers
        self.train_set: ContentImages | None = None
        self.val_set: ContentImages | None = None

    @property
    def style_names(self) -> list[str]:
        return [s.name for s in self.style_specs]

    @property
    def style_loss_weights(self) -> list[float]:
        return [s.weight for s in self.style_specs]

    def load_style_images(self) -> list[Tensor]:
        """One (3, H, W) tensor per style, shorter side ``style_size``."""
        return [load_style_image(s.path, self.style_size) for s in self.style_specs]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_files, bad = _usable(find_images(self.content_dir))
        if bad:
            warnings.warn(f"skipped {len(bad)} content file(s) that are not readable images: " + "; ".join(bad[:5]), stacklevel=2)
        if not train_files:
            raise ValueError(f"no readable images in {self.content_dir}")
        self.train_set = ContentImages(train_files, image_size=self.image_size, train=True)
        if self.val_dir is not None:
            val_files, _ = _usable(find_images(self.val_dir))
        else:  # no separate folder: hold out the last images of the training folder
            val_files = train_files[-self.num_val :]
        self.val_set = ContentImages(val_files[: self.num_val], image_size=self.image_size, train=False)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) >= self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=0)
