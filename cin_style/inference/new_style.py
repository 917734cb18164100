"""Any painting as a new style of a trained model, in minutes on a CPU.

Dumoulin, Shlens & Kudlur (ICLR 2017, §3.4) observe that a conditional-instance-norm network's
convolutions are shared by all its styles, so a new painting needs only a new gamma/beta row:
keep every convolution and every old row, and fit the new row alone with the same perceptual
loss the model was trained with. This module does that fit, as fast as the 2-core CPU allows:

- the row starts from the **nearest blend** of the model's own rows (the blend whose output is
  nearest the painting in Gram space: :func:`nearest_blend`); that blend is also the instant
  preview shown before any fitting;
- the fit runs a one-style copy of the network (the new row only, every convolution frozen, so
  the backward pass computes no weight gradients for them) on whole 256 px crops of photos at
  the scale the model paints at (shorter side 256 px, as training and evaluation see them): the
  Gram statistics of a 256 px crop are those the row is judged by, where four 128 px crops of
  as many pixels left its style term 9 % higher (``docs/add_style.md``);
- the crops are cut once, a small pool whose content features are computed once (the photo's
  VGG-16 pass would be about a fifth of every step's multiply-adds);
- Adam on the row's few thousand numbers with a large step that decays along a half cosine.

The photos are the user's own or, by default, the small public-domain set that ships with the
package (``cin_style/assets/photos``), so a wheel without any data folder can add styles.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from cin_style.io.images import find_images, load_image
from cin_style.io.paintings import fit_shorter, resize_shorter, trim_frame
from cin_style.losses.perceptual import PerceptualLoss
from cin_style.network.fastconv import native_bf16
from cin_style.network.styles import IDENTITY
from cin_style.network.transformer import StyleTransformer

__all__ = ["FitSettings", "SIGNATURE_CROPS", "bundled_photos", "fitting_crops", "painting_tensor", "row_grams", "nearest_blend", "fit_row", "MIN_PAINTING_SIDE"]

#: A painting smaller than this on its shorter side has too few strokes to take a style from.
MIN_PAINTING_SIDE = 64


@dataclass(frozen=True)
class FitSettings:
    """How a new row is fitted. The defaults are the fastest measured that meet issue 32's
    gates on the 2-core CPU (``docs/add_style.md``, "Choosing the settings").

    ``steps`` Adam steps of ``batch`` crops of ``crop`` px, drawn from ``pool`` crops cut once
    from photos whose shorter side is ``photo_size`` px, at learning rate ``lr`` decaying along a
    half cosine to a tenth.
    ``precision``: ``"32-true"`` (default: the setting the gates of ``docs/add_style.md`` were
    measured with), ``"bf16-mixed"`` (bfloat16 autocast; the row itself and the Gram matrices
    stay float32), or ``"auto"``: bfloat16 where the hardware multiplies it natively (a CPU with
    AMX or AVX-512 BF16, a CUDA GPU that has it), as ``trainer.precision=auto`` does.
    """

    steps: int = 80
    batch: int = 1
    crop: int = 256
    photo_size: int = 256
    lr: float = 0.1
    pool: int = 16
    seed: int = 0
    precision: str = "32-true"

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "crop", "photo_size", "pool"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.crop > self.photo_size:
            raise ValueError(f"crop ({self.crop}) must not exceed photo_size ({self.photo_size})")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.precision not in ("auto", "bf16-mixed", "32-true"):
            raise ValueError(f"precision must be auto, bf16-mixed or 32-true, got {self.precision!r}")

    def bf16(self, device: torch.device) -> bool:
        """Whether the fit runs under bfloat16 autocast on ``device``."""
        if self.precision != "auto":
            return self.precision == "bf16-mixed"
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return device.type == "cpu" and native_bf16()

    def record(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:16]


#: The crops a model's signature (:func:`row_grams`) and the preview (:func:`nearest_blend`) are
#: measured on: two 128 px crops, a quarter of the fit's 256 px crops, so that the preview
#: paints little, whatever the fit's own settings.
SIGNATURE_CROPS = FitSettings(crop=128, photo_size=256)


def bundled_photos() -> list[Path]:
    """The public-domain and CC0 photos that ship with the package (``cin_style/assets/photos``)."""
    return find_images(Path(str(files("cin_style") / "assets" / "photos")))


def painting_tensor(painting: str | os.PathLike | Image.Image, style_size: int) -> Tensor:
    """A painting (a file or a PIL image) as the losses take it: frame trimmed, shorter side
    ``style_size`` (:func:`cin_style.io.paintings.load_style_image`), (3, H, W) in [0, 1].
    Raises ValueError for a painting under :data:`MIN_PAINTING_SIDE` px."""
    image = load_image(painting) if not isinstance(painting, Image.Image) else painting.convert("RGB")
    if min(image.size) < MIN_PAINTING_SIDE:
        where = f"{painting}: " if not isinstance(painting, Image.Image) else ""
        raise ValueError(f"{where}the painting is {image.width}x{image.height}; a style needs at least {MIN_PAINTING_SIDE} px on the shorter side")
    return TF.to_tensor(resize_shorter(trim_frame(image), style_size))


def fitting_crops(
    photos: Sequence[str | os.PathLike | Image.Image], settings: FitSettings, *, generator: torch.Generator, count: int | None = None
) -> Tensor:
    """(count, 3, crop, crop), ``count`` defaulting to ``settings.pool``: random crops, flipped at
    random, of ``photos`` at shorter side ``photo_size``."""
    images = [fit_shorter(load_image(p) if not isinstance(p, Image.Image) else p.convert("RGB"), settings.photo_size) for p in photos]
    if not images:
        raise ValueError("no photos to fit the style on")
    tensors = [TF.to_tensor(im) for im in images]
    c, count = settings.crop, count if count is not None else settings.pool
    picks = torch.randint(0, len(tensors), (count,), generator=generator).tolist()
    crops = []
    for i in picks:
        t = tensors[i]
        top = int(torch.randint(0, t.shape[1] - c + 1, (1,), generator=generator))
        left = int(torch.randint(0, t.shape[2] - c + 1, (1,), generator=generator))
        crop = t[:, top : top + c, left : left + c]
        crops.append(crop.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else crop)
    return torch.stack(crops)


@torch.no_grad()
def row_grams(transformer: StyleTransformer, styles: Sequence[str], loss: PerceptualLoss, photos: Tensor) -> dict[str, Tensor]:
    """The Gram matrices of every row's output on ``photos``: layer -> (N, B, C, C). A model's
    fixed signature (:func:`nearest_blend` compares paintings with it); the identity row's too."""
    n, b = len(styles), photos.shape[0]
    out: dict[str, list[Tensor]] = {}
    eye = torch.eye(n, device=photos.device, dtype=photos.dtype)
    for i in range(n):
        grams = loss.style_grams(transformer(photos, eye[i].expand(b, -1)))
        for name, g in grams.items():
            out.setdefault(name, []).append(g)
    return {name: torch.stack(gs) for name, gs in out.items()}


@torch.no_grad()
def nearest_blend(
    transformer: StyleTransformer,
    styles: Sequence[str],
    target: dict[str, Tensor],
    loss: PerceptualLoss,
    photos: Tensor,
    *,
    rows: dict[str, Tensor] | None = None,
    candidates: int = 3,
) -> tuple[Tensor, float]:
    """The blend of the model's rows (weights (N,)) whose output on ``photos`` is nearest the
    painting's Gram matrices ``target``, and that distance (the style term of the loss).

    Each row is measured by its output's Gram matrices (``rows``, from :func:`row_grams`; computed
    here when not given); then the inverse-distance blends of the nearest 2 and 3 rows paint the
    photos (CIN blends are linear in gamma/beta, so a blend of paintings' rows paints between
    them), and the nearest of all is returned. The identity row is never part of it."""
    n, b = len(styles), photos.shape[0]
    rows = rows if rows is not None else row_grams(transformer, styles, loss, photos)
    flat = {name: g.flatten(0, 1) for name, g in rows.items()}
    per_row = loss.style_term(flat, {k: v.expand(n * b, -1, -1) if v.shape[0] == 1 else v for k, v in target.items()}).view(n, b).mean(1)
    usable = [i for i, s in enumerate(styles) if s != IDENTITY]
    order = sorted(usable, key=lambda i: float(per_row[i]))
    best_weights, best = torch.eye(n)[order[0]], float(per_row[order[0]])
    for k in range(2, min(candidates, len(order)) + 1):
        near = order[:k]
        inverse = torch.tensor([1.0 / max(float(per_row[i]), 1e-12) for i in near])
        weights = torch.zeros(n)
        weights[near] = inverse / inverse.sum()
        out = transformer(photos, weights.to(photos).expand(b, -1))
        d = float(loss.style_term(loss.style_grams(out), target).mean())
        if d < best:
            best_weights, best = weights, d
    return best_weights, best


def fit_row(
    transformer: StyleTransformer,
    start: Tensor,
    target: dict[str, Tensor],
    loss: PerceptualLoss,
    crops: Tensor,
    settings: FitSettings,
    *,
    generator: torch.Generator | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[dict[str, Tensor], list[float]]:
    """Fit one new gamma/beta row: returns the row of each style table (name -> (C,)) and the
    loss per step. ``start`` (N,) is the blend of the existing rows to begin from
    (:func:`nearest_blend`); each step's batch is drawn from ``crops`` (:func:`fitting_crops`) with
    ``generator``, and the crops' content features are computed once, before the first step (the
    photo's VGG-16 pass is about a fifth of a step's multiply-adds). ``transformer`` is left exactly as it was:
    the fit runs a one-style copy of it whose convolutions take no gradients."""
    device = next(transformer.parameters()).device
    single = StyleTransformer(**transformer.config.to_dict() | {"num_styles": 1}).to(device)
    tables = transformer.style_tables()
    start = start.to(device, torch.float32)
    with torch.no_grad():
        state = transformer.state_dict()
        for key, value in single.state_dict().items():
            value.copy_((start @ state[key])[None] if key in tables else state[key])
    rows = single.style_tables()
    for name, param in single.named_parameters():
        param.requires_grad_(name in rows)
    single.train()
    optimizer = torch.optim.Adam(rows.values(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, settings.steps) / settings.steps))
    )
    one = torch.ones(settings.batch, 1, device=device)
    bf16 = settings.bf16(device)
    crops = crops.to(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        features = [loss.vgg(part, loss.content_layers) for part in crops.split(16)]
    features = {name: torch.cat([f[name] for f in features]) for name in features[0]}
    generator = generator if generator is not None else torch.Generator().manual_seed(settings.seed)
    history: list[float] = []
    for step in range(1, settings.steps + 1):
        picks = torch.randint(0, crops.shape[0], (settings.batch,), generator=generator).to(device)
        photos = crops[picks]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            terms = loss(single(photos, one), photos, style_grams=target, content_features={k: v[picks] for k, v in features.items()})
        total = terms.total.mean()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        schedule.step()
        history.append(float(total.detach()))
        if progress is not None:
            progress(step, history[-1])
    return {name: p.detach()[0].clone() for name, p in rows.items()}, history
