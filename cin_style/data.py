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

from .images import ImageLoadError, find_images, load_image

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


def load_center_crops(files: Sequence[Path], size: int) -> Tensor:
    """Photos as (P, 3, size, size): shorter side ``size``, centre crop (the validation transform)."""
    dataset = ContentImages(files, image_size=size, train=False)
    return torch.stack([dataset._load(i, None) for i in range(len(files))])


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


#: Training photos are trimmed to at most this aspect ratio (centred) before the random crop,
#: so that every photo fits the fixed-size slots of the on-device cache.
MAX_ASPECT = 2


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
        image = resize_shorter(load_image(self.files[index]), self.image_size)
        longest = self.image_size * MAX_ASPECT
        if image.width > longest or image.height > longest:
            image = TF.center_crop(image, [min(image.height, longest), min(image.width, longest)])
        return image

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
