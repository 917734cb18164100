"""Temporal stability trained into the network: a perturbed copy of each photo must not change the output
more than it changes the photo.

A feed-forward style network flickers on video because it amplifies small input changes: a
one-pixel pan moves the image relative to the network's stride-4 sampling grid, sensor noise and
lighting shifts change instance-norm statistics, and the strokes it paints jump. Gupta et al.
(2017, "Characterizing and Improving Stability in Neural Style Transfer") stylize a perturbed copy
of each training image and penalize the difference of the two outputs; ReCoNet (Gao et al. 2018)
asks the output's change between frames to equal the input's change (so that a real brightness
change may still show). This term does both at once for synthetic perturbations:

* the copy is the photo translated by a whole-pixel shift (dy, dx) with ``|dy|, |dx| <= shift``
  (edges replicated), times a brightness factor ``1 + b`` with ``|b| <= brightness``, plus Gaussian
  noise of standard deviation ``noise``;
* both outputs are compared after shifting back, on the interior that both images share
  (``shift`` pixels from each border), and the penalty is the mean squared difference between the
  output's change and the photo's change there: ``mean(((y' - y) - (x' - x))^2)``.

With no perturbation the term is exactly zero. It costs one more pass of the transformer (forward
and backward) per step, not of VGG-16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Perturbation", "perturb", "stability_loss"]


@dataclass(frozen=True)
class Perturbation:
    """A perturbed copy of a batch and the shift that maps it back: ``images[..., i + dy, j + dx]``
    is shown at ``(i, j)`` of ``perturbed`` (within ``margin`` of the borders)."""

    perturbed: Tensor
    dy: int
    dx: int
    margin: int


def perturb(images: Tensor, *, shift: int = 4, noise: float = 0.02, brightness: float = 0.05, generator: torch.Generator | None = None) -> Perturbation:
    """A randomly perturbed copy of ``images`` (B, 3, H, W) in [0, 1]: one shift for the batch,
    a brightness factor and noise per sample. Random numbers come from ``generator`` (CPU)."""
    if shift < 0 or noise < 0 or brightness < 0:
        raise ValueError(f"shift, noise and brightness must be non-negative, got {shift}, {noise}, {brightness}")
    b, _, h, w = images.shape
    if 2 * shift >= min(h, w):
        raise ValueError(f"a shift of {shift} pixels leaves nothing to compare in {h}x{w} images")
    dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator)) if shift else (0, 0)
    x = images
    if dy or dx:
        padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
        x = padded[..., shift + dy : shift + dy + h, shift + dx : shift + dx + w]
    if brightness:
        factor = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * brightness
        x = x * factor.to(x)
    if noise:
        x = x + noise * torch.randn(x.shape, generator=generator).to(x)
    return Perturbation(x.clamp(0, 1), dy, dx, shift)


def stability_loss(output: Tensor, perturbed_output: Tensor, images: Tensor, p: Perturbation) -> Tensor:
    """Per-sample mean squared difference between the output's change and the photo's change,
    compared on the shared interior after undoing the shift. Shape (B,), float32."""
    m, h, w = p.margin, images.shape[-2], images.shape[-1]

    def original(t: Tensor) -> Tensor:  # the pixels the perturbed copy shows at its interior
        return t[..., m + p.dy : h - m + p.dy, m + p.dx : w - m + p.dx]

    def moved(t: Tensor) -> Tensor:
        return t[..., m : h - m, m : w - m]

    change_out = moved(perturbed_output).float() - original(output).float()
    change_in = moved(p.perturbed).float() - original(images).float()
    return (change_out - change_in).pow(2).flatten(1).mean(1)
