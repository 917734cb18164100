"""The optimization method of Gatys, Ecker & Bethge (CVPR 2016): the quality reference.

Instead of a network, the pixels of the output are the variables: starting from the photo
(or from noise), they are changed until the image's VGG-16 features match the photo's
(content) and its Gram matrices match the painting's (style). It takes seconds to minutes
per image where the feed-forward network takes milliseconds; the networks are trained to
approximate exactly this, with the same :class:`~cin_style.loss.PerceptualLoss`.

Nothing here reads files or knows the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .loss import LossTerms, PerceptualLoss

__all__ = ["optimize_images", "OptimizationResult", "METHODS", "INITS"]

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
    init: str = "content",
    lr: float | None = None,
    seed: int = 0,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> OptimizationResult:
    """Optimize images (B, 3, H, W) so that their features match ``content`` and ``style_grams``.

    ``style_grams`` are the painting's Gram matrices per style layer, (1 or B, C, C), as
    :meth:`PerceptualLoss.style_grams` returns them. The B images are independent problems
    solved together (the loss is their sum). ``progress(step, losses)`` is called after
    every step.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    content = content.detach()
    with torch.no_grad():
        content_features = loss.vgg(content)  # targets, computed once
    if init == "content":
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

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        total = evaluate().total.sum()
        total.backward()
        return total

    for step in range(1, steps + 1):
        optimizer.step(closure)
        with torch.no_grad():
            # The painting lives in [0, 1]; so does the image (projected after every step,
            # as in the PyTorch tutorial's L-BFGS implementation of Gatys et al.).
            image.clamp_(0, 1)
            terms = evaluate()
        history.append({k: float(v) for k, v in terms.means().items()})
        if progress is not None:
            progress(step, history[-1])
    with torch.no_grad():
        terms = evaluate()
    return OptimizationResult(images=image.detach(), terms=terms, history=history)
