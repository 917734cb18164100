"""The optimization method of Gatys, Ecker & Bethge (CVPR 2016): the quality reference.

Instead of a network, the pixels of the output are the variables: starting from the photo
(or from noise), they are changed until the image's VGG-16 features match the photo's
(content) and its Gram matrices match the painting's (style). It takes seconds to minutes
per image where the feed-forward network takes milliseconds; the networks are trained to
approximate exactly this, with the same :class:`~cin_style.losses.perceptual.PerceptualLoss`.

Nothing here knows the command line; :func:`optimize_file` reads and writes files for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cin_style.losses.perceptual import LossTerms, PerceptualLoss

__all__ = ["optimize_images", "optimize_file", "save_result", "reference_totals", "OptimizationResult", "METHODS", "INITS"]

METHODS = ("lbfgs", "adam")
INITS = ("content", "noise")

#: Adam's default step in pixel units ([0, 1] images); L-BFGS uses a line search instead.
ADAM_LR = 0.02


@dataclass
class OptimizationResult:
    """The optimized images (B, 3, H, W) in [0, 1], the final loss terms and the loss curve."""

    images: Tensor
    terms: LossTerms
    history: list[dict[str, float]] = field(default_factory=list)  # per step: content, style, tv, total (batch means)


def optimize_images(
    content: Tensor,
    *,
    loss: PerceptualLoss,
    style_grams: dict[str, Tensor],
    steps: int = 300,
    method: str = "lbfgs",
    init: str | Tensor = "content",
    lr: float | None = None,
    seed: int = 0,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> OptimizationResult:
    """Optimize images (B, 3, H, W) so that their features match ``content`` and ``style_grams``.

    ``style_grams`` are the painting's Gram matrices per style layer, (1 or B, C, C), as
    :meth:`PerceptualLoss.style_grams` returns them. The B images are independent problems
    solved together (the loss is their sum). ``init``: start from the photo (``"content"``),
    from noise, or from given images of ``content``'s shape (a network's output, to refine it).
    ``progress(step, losses)`` is called after every step.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(init, Tensor):
        if init.shape != content.shape:
            raise ValueError(f"init images {tuple(init.shape)} must have the content's shape {tuple(content.shape)}")
    elif init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)} or images, got {init!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    content = content.detach()
    with torch.no_grad():
        content_features = loss.vgg(content)  # targets, computed once
    if isinstance(init, Tensor):
        start = init.detach().to(content).clone(memory_format=torch.contiguous_format)
    elif init == "content":
        start = content.clone(memory_format=torch.contiguous_format)
    else:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        start = torch.rand(content.shape, generator=generator).to(content)
    image = start.requires_grad_(True)

    def evaluate() -> LossTerms:
        return loss(image, content, style_grams=style_grams, content_features=content_features)

    history: list[dict[str, float]] = []
    if method == "lbfgs":
        optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
            [image], lr=lr or 1.0, max_iter=1, history_size=50, line_search_fn="strong_wolfe"
        )
    else:
        optimizer = torch.optim.Adam([image], lr=lr or ADAM_LR)

    # The first evaluation of each step is of the image as the previous step left it: its losses
    # are that step's history entry, so no extra forward pass per step is spent on reporting
    # (a fifth of an L-BFGS step's work; the last step's entry comes from the final evaluation).
    starts: list[dict[str, float]] = []

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms = evaluate()
        if not starts:
            starts.append({k: float(v.detach()) for k, v in terms.means().items()})
        total = terms.total.sum()
        total.backward()
        return total

    def record(step: int, losses: dict[str, float]) -> None:
        history.append(losses)
        if progress is not None:
            progress(step, history[-1])

    for step in range(1, steps + 1):
        starts.clear()
        optimizer.step(closure)
        if step > 1:
            record(step - 1, starts[0])
        with torch.no_grad():
            # The painting lives in [0, 1]; so does the image (projected after every step,
            # as in the PyTorch tutorial's L-BFGS implementation of Gatys et al.).
            image.clamp_(0, 1)
    with torch.no_grad():
        terms = evaluate()
    record(steps, {k: float(v) for k, v in terms.means().items()})
    return OptimizationResult(images=image.detach(), terms=terms, history=history)


def reference_totals(
    photos: Tensor,
    paintings: Mapping[str, Tensor],
    *,
    loss: PerceptualLoss,
    steps: int = 100,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """The mean total loss that ``steps`` L-BFGS steps from the photo reach on ``photos`` (P, 3, H, W),
    per painting (3, h, w): the bound a feed-forward network approximates, style by style (the
    reference of the balanced training objective, :attr:`~cin_style.losses.perceptual.LossConfig.balance`).
    ``progress(name, total)`` is called after each painting."""
    totals: dict[str, float] = {}
    for name, painting in paintings.items():
        grams = loss.style_grams(painting.unsqueeze(0).to(photos))
        result = optimize_images(photos, loss=loss, style_grams=grams, steps=steps)
        totals[name] = float(result.terms.total.mean())
        if progress is not None:
            progress(name, totals[name])
    return totals


def save_result(result: OptimizationResult, output: str | os.PathLike, *, title: str = "", quality: int = 95) -> list[Path]:
    """Write the first optimized image to ``output`` and its loss curve beside it, as numbers
    (``.loss.csv``: step, content, style, tv, total) and as a picture (``.loss.png``). Returns the paths."""
    import csv

    from cin_style.io.images import save_image, to_pil
    from cin_style.io.sheets import loss_curve

    output = Path(output)
    save_image(to_pil(result.images[0]), output, quality=quality)
    stem = output.with_suffix("")
    table, picture = Path(f"{stem}.loss.csv"), Path(f"{stem}.loss.png")
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "content", "style", "tv", "total"])
        writer.writeheader()
        writer.writerows({"step": step, **row} for step, row in enumerate(result.history, start=1))
    save_image(loss_curve({k: [row[k] for row in result.history] for k in ("total", "content", "style")}, title=title), picture)
    return [output, table, picture]


def optimize_file(
    content: str | os.PathLike,
    painting: str | os.PathLike,
    output: str | os.PathLike,
    *,
    loss: Mapping[str, Any] | None = None,
    size: int | None = 512,
    style_size: int | None = None,
    device: str | torch.device | None = None,
    max_pixels: int | None = None,
    quality: int = 95,
    progress: bool = True,
    **options: Any,
) -> tuple[OptimizationResult, list[Path]]:
    """Gatys et al. from files: the photo (longer side at most ``size``) painted like ``painting``
    (its shorter side ``style_size``, default the photo's shorter side), with the loss settings
    ``loss`` (fields of :class:`~cin_style.losses.perceptual.LossConfig`; the training defaults otherwise) and
    :func:`optimize_images`' ``options`` (steps, method, init, lr, seed); written by :func:`save_result`.
    Both images are read (and refused if broken) before VGG-16 loads."""
    from tqdm.auto import tqdm

    from cin_style.io.paintings import load_style_image
    from cin_style.io.images import limit_longer_side, load_image, to_tensor
    from cin_style.losses.perceptual import LossConfig

    photo = limit_longer_side(load_image(content, max_pixels=max_pixels), size)
    load_image(painting, max_pixels=max_pixels)
    from cin_style.network.devices import default_device

    device = torch.device(device) if device is not None else default_device()
    perceptual = PerceptualLoss(num_styles=1, config=LossConfig(**dict(loss or {}))).to(device).eval()
    grams = perceptual.style_grams(load_style_image(painting, style_size or min(photo.size))[None].to(device))
    method = options.get("method", "lbfgs")
    with tqdm(total=options.get("steps", 300), unit="step", desc=f"optimize ({method})", disable=not progress) as bar:
        result = optimize_images(
            to_tensor(photo)[None].to(device), loss=perceptual, style_grams=grams, **options,
            progress=lambda step, losses: bar.update(1) or bar.set_postfix(total=f"{losses['total']:.4g}"),
        )  # fmt: skip
    title = f"{Path(painting).name}: {method}, {options.get('init', 'content')} init"
    return result, save_result(result, output, title=title, quality=quality)
