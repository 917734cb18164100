"""Perceptual losses (Johnson, Alahi & Fei-Fei, ECCV 2016) for N styles at once.

Conventions, chosen once and used by training, evaluation and optimization alike:

* Features are VGG-16 ReLU activations of images in [0, 1] (ImageNet-normalized inside).
* **Content loss** of a layer: mean squared difference of the features, averaged over
  channels and positions (``F.mse_loss``).
* **Gram matrix** of features ``F`` of shape (C, H, W): ``G = F F^T / (H W)``, i.e. the
  average over positions of the outer product of feature vectors. Dividing by H·W (and not
  by C·H·W as Johnson et al. do) follows Magenta and makes the Gram matrix independent of
  the image size, so a painting at any ``style_size`` gives targets for crops of any size.
* **Style loss** of a layer: mean squared difference of Gram matrices, averaged over the
  C×C entries.
* **Total variation**: mean squared difference of neighbouring pixels, horizontally plus
  vertically (off by default, as in Magenta).

``total = content_weight * sum_l w_l content_l + style_weight * m_s * sum_l w_l style_l + tv_weight * tv``
where ``m_s`` is the per-style multiplier of the sample's style. Every term is kept per
sample so that a batch can mix styles (each sample is compared with its own style's Gram
targets) and the trainer can report each style separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from cin_style.losses.vgg import VGG16Features, layer_channels

__all__ = ["gram_matrix", "total_variation", "LossConfig", "PerceptualLoss", "LossTerms", "BALANCES", "balance_weights"]

#: The choices of :attr:`LossConfig.balance`.
BALANCES = ("none", "gatys")


@dataclass
class LossConfig:
    """What the perceptual loss compares and how much each term weighs: the one place its defaults
    are written. Training builds it from the ``loss`` config group, a model file's training record
    keeps it (:meth:`record`), and evaluation and optimization read it back (:meth:`from_record`)."""

    content_layers: dict[str, float] = field(default_factory=lambda: {"relu3_3": 1.0})
    style_layers: dict[str, float] = field(default_factory=lambda: {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0})
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 0.0
    pooling: str = "max"  # VGG-16's pooling: max (torchvision) or avg (Gatys et al., Magenta)
    #: How multi-style training weighs the styles against each other. "none": each sample's total
    #: as it is, so the shared convolutions mostly follow the paintings with large losses (they
    #: differ severalfold, as Cheng et al., CVPR 2021, show); "gatys": each sample's total divided
    #: by its style's reference, the mean total that the optimization method (Gatys et al.,
    #: ``balance_steps`` L-BFGS steps) reaches on ``balance_photos`` training photos at
    #: ``balance_size`` px (None: the training crop size), so that training minimizes the sum of
    #: the per-style ratios to that bound, which is what ``cin-style evaluate`` measures. A
    #: training setting: evaluation and optimization compare unweighted totals.
    balance: str = "none"
    balance_photos: int = 2
    balance_steps: int = 100
    balance_size: int | None = None
    #: Where VGG-16's weights come from (None: found automatically, see :mod:`cin_style.losses.vgg`; a file;
    #: or "random" for shape tests). A property of the machine, not of the loss: never recorded.
    vgg_weights: str | None = None

    def __post_init__(self) -> None:
        if self.balance not in BALANCES:
            raise ValueError(f"loss.balance must be one of {', '.join(BALANCES)}, got {self.balance!r}")
        if self.balance_photos < 1 or self.balance_steps < 1:
            raise ValueError(f"loss.balance_photos and loss.balance_steps must be at least 1, got {self.balance_photos} and {self.balance_steps}")

    def record(self) -> dict[str, Any]:
        """The settings a model file records (everything but ``vgg_weights``)."""
        return {k: v for k, v in asdict(self).items() if k != "vgg_weights"}

    def scoring_record(self) -> dict[str, Any]:
        """:meth:`record` without the training-only settings (the balance): what a loss value
        depends on, so that two models trained with and without the balanced objective are scored
        by, and share cached optimization figures for, the same loss."""
        return {k: v for k, v in self.record().items() if not k.startswith("balance")}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LossConfig:
        """The loss a model was trained with, from its training record (defaults for what it lacks)."""
        keys = {f.name for f in fields(cls)} - {"vgg_weights"}
        return cls(**{k: v for k, v in record.items() if k in keys})


def balance_weights(style_names: Sequence[str], reference: Mapping[str, float], *, unreferenced: Sequence[str] = ()) -> Tensor:
    """Each style's weight in a balanced objective: 1 / its reference total, so that the weighted
    loss is the sum of the per-style ratios to the reference. The styles in ``unreferenced`` (the
    identity row, which has no painting) get 1 / the mean reference, the weight a style of average
    difficulty gets, so that their share of the objective stays what it was unbalanced."""
    missing = sorted(set(style_names) - set(reference) - set(unreferenced))
    if missing:
        raise ValueError(f"no balance reference for style(s) {', '.join(missing)}")
    values = [float(reference[n]) for n in style_names if n not in unreferenced]
    if any(not v > 0 or v != v or v == float("inf") for v in values):
        raise ValueError(f"balance references must be positive and finite, got {values}")
    mean = sum(values) / len(values) if values else 1.0
    return torch.tensor([1.0 / (mean if n in unreferenced else float(reference[n])) for n in style_names])


def gram_matrix(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C), normalized by H·W. Computed in float32."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w).float()
    # Outside autocast: under bfloat16 autocast (bf16-mixed training, the bf16 fit of a new style)
    # bmm would round the float32 features back to bfloat16's 8 bits of mantissa, and a sum over
    # H·W products of them is the one place in the loss where that error adds up.
    with torch.autocast(f.device.type, enabled=False):
        return torch.bmm(f, f.transpose(1, 2)) / (h * w)


def total_variation(images: Tensor) -> Tensor:
    """Per-sample mean squared difference of vertically and horizontally adjacent pixels."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).float().pow(2).flatten(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).float().pow(2).flatten(1)
    zero = images.new_zeros(images.shape[0], dtype=torch.float32)
    return (dy.mean(1) if dy.numel() else zero) + (dx.mean(1) if dx.numel() else zero)


@dataclass
class LossTerms:
    """Weighted loss terms, each of shape (B,), and their batch means. ``stability`` is set only
    by training with the stability term (:mod:`cin_style.losses.stability`). ``grams`` holds the
    output's Gram matrices per style layer (detached), so that a measurement can compare them
    with other paintings without a second pass through VGG (:mod:`cin_style.quality.evaluate`)."""

    content: Tensor
    style: Tensor
    tv: Tensor
    stability: Tensor | None = None
    grams: dict[str, Tensor] | None = None

    @property
    def total(self) -> Tensor:
        total = self.content + self.style + self.tv
        return total if self.stability is None else total + self.stability

    def means(self) -> dict[str, Tensor]:
        means = {"content": self.content.mean(), "style": self.style.mean(), "tv": self.tv.mean(), "total": self.total.mean()}
        if self.stability is not None:
            means["stability"] = self.stability.mean()
        return means


class PerceptualLoss(nn.Module):
    """Content + Gram style + TV loss against per-style targets kept as buffers.

    ``config`` is a :class:`LossConfig` (or a mapping of its fields; None: the defaults).
    Call :meth:`set_style_targets` once with one image per style; afterwards
    ``loss(output, content, style_index)`` compares each output with its own content image
    and with the Gram targets of its own style. ``style_index`` may also be ``None`` with
    ``style_images`` given, to compare against arbitrary style images (optimization).
    """

    def __init__(
        self,
        *,
        num_styles: int,
        config: LossConfig | Mapping[str, Any] | None = None,
        vgg: VGG16Features | None = None,
        style_multipliers: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        config = config if isinstance(config, LossConfig) else LossConfig(**dict(config or {}))
        self.config = config
        self.content_layers = dict(config.content_layers)
        self.style_layers = dict(config.style_layers)
        if not self.content_layers and not self.style_layers:
            raise ValueError("the loss needs at least one content or style layer")
        self.content_weight = float(config.content_weight)
        self.style_weight = float(config.style_weight)
        self.tv_weight = float(config.tv_weight)
        self.num_styles = num_styles
        layers = list(self.content_layers) + list(self.style_layers)
        self.vgg = vgg if vgg is not None else VGG16Features(layers=layers, weights=config.vgg_weights, pooling=config.pooling)
        missing = set(layers) - set(self.vgg.layers)
        if missing:
            raise ValueError(f"the VGG network does not compute {sorted(missing)}")
        multipliers = torch.ones(num_styles) if style_multipliers is None else torch.as_tensor(style_multipliers, dtype=torch.float32)
        if multipliers.shape != (num_styles,):
            raise ValueError(f"{multipliers.numel()} style multipliers for {num_styles} styles")
        self.register_buffer("style_multipliers", multipliers)
        for name in self.style_layers:
            c = layer_channels(name)
            self.register_buffer(f"gram_{name}", torch.zeros(num_styles, c, c))
        self.register_buffer("targets_set", torch.zeros((), dtype=torch.bool))

    def gram_targets(self, layer: str) -> Tensor:
        return getattr(self, f"gram_{layer}")

    @torch.no_grad()
    def style_grams(self, images: Tensor) -> dict[str, Tensor]:
        """Gram matrices (B, C, C) of the style layers for a batch of style images."""
        feats = self.vgg(images)
        return {name: gram_matrix(feats[name]) for name in self.style_layers}

    @torch.no_grad()
    def set_style_targets(self, images: Sequence[Tensor]) -> None:
        """Compute and store the Gram targets of one image (3, H, W) in [0, 1] per style."""
        if len(images) != self.num_styles:
            raise ValueError(f"{len(images)} style images for {self.num_styles} styles")
        for s, image in enumerate(images):
            image = image.unsqueeze(0) if image.dim() == 3 else image
            grams = self.style_grams(image.to(self.style_multipliers.device))
            for name, g in grams.items():
                self.gram_targets(name)[s] = g[0]
        self.targets_set.fill_(True)

    def style_term(self, grams: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """The weighted style term (B,) of Gram matrices against target Grams (B or 1, C, C) per style
        layer: ``style_weight * sum_l w_l * mean((G_l - T_l)^2)`` (no per-style multiplier)."""
        total = 0.0
        for name, w in self.style_layers.items():
            total = total + w * (grams[name] - targets[name]).pow(2).flatten(1).mean(1)
        return self.style_weight * total

    def forward(
        self,
        output: Tensor,
        content: Tensor,
        style_index: Tensor | None = None,
        *,
        style_grams: Mapping[str, Tensor] | None = None,
        content_features: Mapping[str, Tensor] | None = None,
    ) -> LossTerms:
        """Loss terms per sample.

        ``style_index`` (B,) picks each sample's stored targets; alternatively
        ``style_grams`` gives target Gram matrices (B or 1, C, C) per style layer.
        ``content_features`` may pass precomputed content features (optimization reuses them).
        """
        b = output.shape[0]
        zero = output.new_zeros(b, dtype=torch.float32)
        feats = self.vgg(output)
        content_loss = zero
        if self.content_layers and self.content_weight:
            if content_features is None:
                with torch.no_grad():  # the photo's features are targets, not variables; only the content layers
                    content_features = self.vgg(content, self.content_layers)
            for name, w in self.content_layers.items():
                diff = (feats[name].float() - content_features[name].float()).pow(2)
                content_loss = content_loss + w * diff.flatten(1).mean(1)
            content_loss = self.content_weight * content_loss

        style_loss, grams = zero, None
        if self.style_layers and self.style_weight:
            if style_grams is None:
                if style_index is None:
                    raise ValueError("give style_index (stored targets) or style_grams")
                # (Reading the flag syncs with the device; a compiled step skips the check, the eager one made it already.)
                if not torch.compiler.is_compiling() and not bool(self.targets_set):
                    raise RuntimeError("style targets were never set: call set_style_targets() first")
                style_index = style_index.to(self.style_multipliers.device).long()
                targets = {name: self.gram_targets(name)[style_index] for name in self.style_layers}
                multipliers = self.style_multipliers[style_index]
            else:
                targets, multipliers = dict(style_grams), output.new_ones(b, dtype=torch.float32)
            grams = {name: gram_matrix(feats[name]) for name in self.style_layers}
            style_loss = multipliers * self.style_term(grams, targets)
            grams = {name: g.detach() for name, g in grams.items()}

        tv_loss = self.tv_weight * total_variation(output) if self.tv_weight else zero
        return LossTerms(content=content_loss, style=style_loss, tv=tv_loss, grams=grams)
