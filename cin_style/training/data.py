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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from cin_style.io.images import ImageLoadError, find_images, load_image
from cin_style.io.paintings import (  # the painting and photo transforms, re-exported where they used to live
    DEFAULT_STYLE_SIZE,
    MAX_ASPECT,
    find_paintings,
    fit_shorter,
    load_center_crops,
    load_style_image,
    recorded_style_size,
    resize_shorter,
    trim_frame,
)

__all__ = [
    "DEFAULT_STYLE_SIZE",
    "recorded_style_size",
    "Painting",
    "ContentImages",
    "Crop",
    "DevicePhotos",
    "ShardedRandomSampler",
    "StyleTransferDataModule",
    "find_paintings",
    "load_center_crops",
    "load_paintings",
    "load_style_image",
    "trim_frame",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Painting:
    """One painting to train a style on: the style's name (as users select it), the file, and the
    multiplier of its style loss (``style_multipliers`` downstream)."""

    name: str
    path: Path
    multiplier: float = 1.0


def load_paintings(styles: Sequence[Mapping] | None = None, style_dir: str | os.PathLike | None = None) -> list[Painting]:
    """Paintings from an explicit list (name, path, optional multiplier) or every image in a folder.

    With a folder, a style's name is the file's stem. Names must be unique.
    """
    paintings: list[Painting] = []
    if styles is not None and len(styles) == 0 and style_dir is None:
        return []  # said explicitly: no paintings (an identity row alone, for example)
    if styles:
        for entry in styles:
            if "path" not in entry:
                raise ValueError(f"style entry {dict(entry)} has no path")
            unknown = sorted(set(entry) - {"name", "path", "multiplier"})
            if unknown:
                raise ValueError(f"style entry {dict(entry)}: unknown key(s) {', '.join(unknown)} (known: name, path, multiplier)")
            path = Path(entry["path"])
            paintings.append(Painting(str(entry.get("name") or path.stem), path, float(entry.get("multiplier", 1.0))))
    elif style_dir is not None:
        paintings = [Painting(p.stem, p) for p in find_images(style_dir)]
    if not paintings:
        raise ValueError("no styles: give data.styles (a list of name/path entries) or data.style_dir (a folder)")
    names = [s.name for s in paintings]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate style names: {', '.join(dupes)}")
    for s in paintings:
        if s.multiplier < 0 or s.multiplier != s.multiplier:
            raise ValueError(f"style {s.name}: multiplier must be a non-negative number, got {s.multiplier}")
        if not s.path.is_file():
            raise FileNotFoundError(f"style {s.name}: painting {s.path} does not exist")
    return paintings


@dataclass(frozen=True)
class Crop:
    """Where a training sample's square crop lies, as fractions of the free range, and whether it is mirrored."""

    top: float
    left: float
    flip: bool

    @classmethod
    def from_key(cls, key: int) -> Crop:
        g = torch.Generator().manual_seed(key)
        top, left, flip = torch.rand(3, generator=g).tolist()
        return cls(top, left, flip < 0.5)

    def offsets(self, height: int, width: int, size: int) -> tuple[int, int]:
        """(top, left) pixel offsets of a ``size`` square in a ``height`` x ``width`` image."""
        return min(int(self.top * (height - size + 1)), height - size), min(int(self.left * (width - size + 1)), width - size)


class ShardedRandomSampler(Sampler):
    """A fresh permutation of the photos every epoch, shared out between processes.

    The permutation and every sample's crop depend only on ``(seed, epoch, photo)``: process
    ``rank`` of ``world_size`` takes positions ``rank, rank + world_size, ...`` of the
    permutation. With a per-process batch of B / world_size, the processes' batches together are
    exactly the batches of size B that one process would draw, with the same crops: the
    property that makes a DDP run match a single-process run (see :meth:`StyleTransferModule.draw_styles`).
    Yields ``(photo index, crop key)`` pairs.
    """

    def __init__(self, size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * 1_000_003 + self.epoch) * 1_000_033
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(base)).tolist()
        order = order[: len(self) * self.world_size]
        for index in order[self.rank :: self.world_size]:
            yield index, base + index + 1


class ContentImages(Dataset):
    """Content photos as (3, size, size) float tensors in [0, 1].

    Items are fetched by index (validation: centre crops) or by ``(index, crop key)`` pairs
    from :class:`ShardedRandomSampler` (training: the key fixes the crop and the flip).
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

    def photo(self, index: int) -> Image.Image:
        """Photo ``index`` resized to the shorter side ``image_size`` and trimmed to :data:`MAX_ASPECT`."""
        return fit_shorter(load_image(self.files[index]), self.image_size)

    def _load(self, index: int, key: int | None) -> Tensor:
        image = self.photo(index)
        s = self.image_size
        if self.train:
            crop = Crop.from_key(key) if key is not None else Crop(*torch.rand(2).tolist(), bool(torch.rand(()) < 0.5))
            top, left = crop.offsets(image.height, image.width, s)
            image = image.crop((left, top, left + s, top + s))
            if crop.flip:
                image = ImageOps.mirror(image)
        else:
            image = TF.center_crop(image, [s, s])
        return TF.to_tensor(image)

    def __getitem__(self, item: int | tuple[int, int]) -> Tensor:
        index, key = item if isinstance(item, tuple) else (item, None)
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if i in self.broken:
                continue
            try:
                return self._load(i, key)
            except ImageLoadError as err:
                self.broken.add(i)
                warnings.warn(f"skipping content image: {err}", stacklevel=2)
        raise RuntimeError("none of the content images can be read")


class CropKeys(Dataset):
    """The training items of the on-device path: ``(photo index, top, left, flip)`` as numbers; the pixels stay on the GPU."""

    def __init__(self, photos: DevicePhotos) -> None:
        self.photos = photos

    def __len__(self) -> int:
        return len(self.photos.sizes)

    def __getitem__(self, item: tuple[int, int]) -> Tensor:
        index, key = item
        crop = Crop.from_key(key)
        h, w = self.photos.sizes[index]
        top, left = crop.offsets(h, w, self.photos.image_size)
        return torch.tensor([index, top, left, int(crop.flip)])


class DevicePhotos:
    """Every training photo decoded once into one uint8 tensor, cropped and flipped on the device.

    Each photo (shorter side ``image_size``, trimmed to :data:`MAX_ASPECT`) sits in an
    ``image_size`` x ``MAX_ASPECT * image_size`` slot, portrait photos transposed. A training batch
    is then one gather on the device (:meth:`crops`): no decoding, resizing or host-to-device
    copy of pixels per step, so the input pipeline cannot starve a fast GPU. The crops are the
    ones :class:`ContentImages` cuts for the same keys (a photo that cannot be decoded becomes
    a black square here, where the loader substitutes the next readable photo). Memory: ``3 * MAX_ASPECT * image_size**2``
    bytes per photo (393 KB at 256 px: 3.1 GB for 8,000 photos).
    """

    def __init__(self, photos: ContentImages) -> None:
        s = photos.image_size
        self.image_size = s
        self.sizes: list[tuple[int, int]] = []
        self.transposed: list[bool] = []
        self.pixels = torch.zeros(len(photos), 3, s, MAX_ASPECT * s, dtype=torch.uint8)
        for i in range(len(photos)):
            try:
                image = TF.pil_to_tensor(photos.photo(i))
            except ImageLoadError as err:
                warnings.warn(f"skipping content image: {err}", stacklevel=2)
                image = torch.zeros(3, s, s, dtype=torch.uint8)  # a black stand-in keeps the indices aligned
            h, w = image.shape[-2:]
            self.sizes.append((h, w))
            self.transposed.append(h > w)
            image = image.transpose(1, 2) if h > w else image
            self.pixels[i, :, : image.shape[1], : image.shape[2]] = image
        self._transposed = torch.tensor(self.transposed)

    def to(self, device: torch.device) -> DevicePhotos:
        self.pixels = self.pixels.to(device)
        self._transposed = self._transposed.to(device)
        return self

    def crops(self, items: Tensor) -> Tensor:
        """Float (B, 3, s, s) crops in [0, 1] for rows ``(index, top, left, flip)`` from :class:`CropKeys`."""
        s = self.image_size
        items = items.to(self.pixels.device)
        index, top, left, flip = items.unbind(1)
        transposed = self._transposed[index]
        # In the stored (possibly transposed) photo, rows are the original columns.
        row0 = torch.where(transposed, left, top)
        col0 = torch.where(transposed, top, left)
        steps = torch.arange(s, device=items.device)
        rows = row0[:, None] + steps  # (B, s)
        cols = col0[:, None] + steps
        patches = self.pixels[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, s, s, 3)
        patches = torch.where(transposed[:, None, None, None], patches.transpose(1, 2), patches)
        patches = torch.where(flip.bool()[:, None, None, None], patches.flip(2), patches)
        return patches.permute(0, 3, 1, 2).float().div_(255)


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
        style_size: int = DEFAULT_STYLE_SIZE,
        batch_size: int = 16,
        num_val: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        on_device: bool = False,
    ) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        self.content_dir = Path(content_dir)
        self.val_dir = Path(val_dir) if val_dir else None
        self.paintings = load_paintings(styles, style_dir)
        self.image_size = image_size
        self.style_size = style_size
        self.batch_size = batch_size
        self.num_val = num_val
        self.num_workers = num_workers
        self.seed = seed
        self.on_device = on_device
        self.device_photos: DevicePhotos | None = None
        self.train_set: ContentImages | None = None
        self.val_set: ContentImages | None = None

    @property
    def style_names(self) -> list[str]:
        return [s.name for s in self.paintings]

    @property
    def style_multipliers(self) -> list[float]:
        return [s.multiplier for s in self.paintings]

    def load_style_images(self) -> list[Tensor]:
        """One (3, H, W) tensor per style, shorter side ``style_size``."""
        return [load_style_image(s.path, self.style_size) for s in self.paintings]

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
        """Batches of ``batch_size`` per process; with N processes the global batch is N times that."""
        assert self.train_set is not None, "call setup() first"
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = ShardedRandomSampler(len(self.train_set), seed=self.seed, rank=rank, world_size=world)
        dataset: Dataset = self.train_set
        if self.on_device:
            if self.device_photos is None:
                self.device_photos = DevicePhotos(self.train_set)
            dataset = CropKeys(self.device_photos)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=len(sampler) >= self.batch_size,
            num_workers=0 if self.on_device else self.num_workers,
            persistent_workers=self.num_workers > 0 and not self.on_device,
            pin_memory=torch.cuda.is_available() and not self.on_device,
        )

    def on_after_batch_transfer(self, batch: Tensor, dataloader_idx: int) -> Tensor:
        """On-device training batches arrive as crop rows; cut the crops where the photos are."""
        trainer = self.trainer
        if self.device_photos is None or trainer is None or not trainer.training or batch.dtype != torch.long:
            return batch
        if self.device_photos.pixels.device != batch.device:
            self.device_photos.to(batch.device)
        return self.device_photos.crops(batch)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=0)
