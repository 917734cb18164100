"""The LightningModule: one :class:`StyleTransformer` trained jointly on N styles.

Each step draws a style per sample (a mixed-style batch, as Magenta trains), stylizes the
photos with that style's gamma/beta rows and scores each output against its own photo and
its own style's Gram targets. Nothing here reads or writes files: the style images come in
through :meth:`set_style_targets`, and :meth:`sample_grid` returns pictures for whoever
saves them (the training script's callback).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from .loss import LossTerms, PerceptualLoss
from .model import StyleTransformer, one_hot_styles
from .styles import IDENTITY

__all__ = ["StyleTransferModule"]


class StyleTransferModule(L.LightningModule):
    """Train a conditional-instance-norm transformer on ``style_names``.

    Args:
        style_names: the styles, in the order of the gamma/beta tables.
        width: channel multiplier of the transformer.
        loss: keyword arguments of :class:`PerceptualLoss` (layers, weights, ``vgg_weights``...).
        style_multipliers: per-style weight of the style loss (default 1 each).
        lr: Adam learning rate.
        style_sampling: ``"uniform"`` draws each sample's style at random; ``"cycle"``
            assigns styles in turn so every style is seen equally often.
        identity_weight: weight of the pixel MSE that trains the ``"identity"`` row (when
            ``style_names`` has one) to reproduce the photo; it is the strength dial's zero.
        frozen_styles: the first ``frozen_styles`` rows and every convolution stay exactly as
            they are (adding styles to a trained network); only the later rows are trained.
    """

    def __init__(
        self,
        *,
        style_names: Sequence[str],
        width: float = 1.0,
        loss: Mapping[str, Any] | None = None,
        style_multipliers: Sequence[float] | None = None,
        lr: float = 1e-3,
        style_sampling: str = "uniform",
        identity_weight: float = 1000.0,
        frozen_styles: int = 0,
    ) -> None:
        super().__init__()
        if not style_names:
            raise ValueError("at least one style is needed")
        if style_sampling not in ("uniform", "cycle"):
            raise ValueError(f"style_sampling must be 'uniform' or 'cycle', got {style_sampling!r}")
        if not 0 <= frozen_styles < len(style_names):
            raise ValueError(f"frozen_styles must leave at least one of the {len(style_names)} styles to train, got {frozen_styles}")
        self.save_hyperparameters()
        self.style_names = list(style_names)
        self.transformer = StyleTransformer(num_styles=len(self.style_names), width=width)
        multipliers = list(style_multipliers) if style_multipliers is not None else [1.0] * len(self.style_names)
        self.identity_index = self.style_names.index(IDENTITY) if IDENTITY in self.style_names else None
        if self.identity_index is not None:
            multipliers[self.identity_index] = 0.0  # the identity row has no painting to match
        self.loss = PerceptualLoss(num_styles=len(self.style_names), style_multipliers=multipliers, **dict(loss or {}))
        self.lr = lr
        self.style_sampling = style_sampling
        self.identity_weight = identity_weight
        self.frozen_styles = frozen_styles
        if frozen_styles:
            self._freeze(frozen_styles)

    def _freeze(self, rows: int) -> None:
        """Keep every convolution and the first ``rows`` gamma/beta rows exactly as they are."""
        for name, param in self.transformer.named_parameters():
            if not name.endswith((".gamma", ".beta")):
                param.requires_grad_(False)
            else:
                # Zero gradients stay zero through Adam (no weight decay), so these rows do not move at all.
                param.register_hook(lambda grad, rows=rows: torch.cat([torch.zeros_like(grad[:rows]), grad[rows:]]))

    @property
    def trainable_styles(self) -> list[int]:
        return list(range(self.frozen_styles, self.num_styles))

    @property
    def num_styles(self) -> int:
        return len(self.style_names)

    def set_style_targets(self, images: Sequence[Tensor] | Mapping[str, Tensor]) -> None:
        """Compute the Gram targets from one painting per style.

        ``images`` is a list in ``style_names`` order, or a mapping from style names to
        paintings that must cover every trained style but the identity row (frozen rows and the
        identity row are never compared with a painting).
        """
        if isinstance(images, Mapping):
            needed = {self.style_names[i] for i in self.trainable_styles} - {IDENTITY}
            missing = sorted(needed - set(images))
            if missing:
                raise ValueError(f"no painting for style(s) {', '.join(missing)}")
            blank = torch.zeros(3, 16, 16)
            images = [images.get(name, blank) for name in self.style_names]
        self.loss.set_style_targets(images)

    def forward(self, images: Tensor, style: Tensor) -> Tensor:
        return self.transformer(images, style)

    def draw_styles(self, batch_size: int) -> Tensor:
        n = len(self.trainable_styles)
        if self.style_sampling == "cycle":
            start = self.global_step * batch_size
            picks = torch.arange(start, start + batch_size, device=self.device) % n
        else:
            picks = torch.randint(0, n, (batch_size,), device=self.device)
        return picks + self.frozen_styles

    def losses(self, output: Tensor, content: Tensor, style_index: Tensor) -> LossTerms:
        """The perceptual loss terms; samples of the identity row add its pixel loss to their content term
        (reproducing the photo is a content objective, and their style term is zero)."""
        terms = self.loss(output, content, style_index)
        if self.identity_index is not None:
            is_identity = (style_index == self.identity_index).float()
            pixel = F.mse_loss(output.float(), content.float(), reduction="none").flatten(1).mean(1)
            terms.content = terms.content + self.identity_weight * is_identity * pixel
        return terms

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        style_index = self.draw_styles(batch.shape[0])
        output = self.transformer(batch, one_hot_styles(style_index, self.num_styles).to(batch))
        terms = self.losses(output, batch, style_index)
        means = terms.means()
        self.log_dict({f"train/{k}": v for k, v in means.items()}, prog_bar=False, batch_size=batch.shape[0])
        self.log("loss", means["total"], prog_bar=True, logger=False, batch_size=batch.shape[0])
        total = terms.total.detach()
        for s in style_index.unique().tolist():
            picked = style_index == s
            self.log(f"train_style/{self.style_names[s]}", total[picked].mean(), batch_size=int(picked.sum()))
        return means["total"]

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        b = batch.shape[0]
        for s in self.trainable_styles:
            index = torch.full((b,), s, device=batch.device, dtype=torch.long)
            terms = self.losses(self.transformer(batch, one_hot_styles(index, self.num_styles).to(batch)), batch, index)
            for key, value in terms.means().items():
                self.log(f"val/{key}", value, batch_size=b * len(self.trainable_styles), on_epoch=True)
            self.log(f"val_style/{self.style_names[s]}", terms.total.mean(), batch_size=b, on_epoch=True)

    @torch.no_grad()
    def sample_grid(self, content: Tensor) -> Tensor:
        """A (3, H, W) grid: one row per photo, the photo first, then every style."""
        rows = []
        for image in content:
            batch = image.unsqueeze(0).expand(self.num_styles, -1, -1, -1)
            styles = torch.eye(self.num_styles, device=image.device, dtype=image.dtype)
            rows += [image.unsqueeze(0), self.transformer(batch, styles)]
        return make_grid(torch.cat(rows).float().cpu(), nrow=self.num_styles + 1, padding=2, pad_value=1.0)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in self.transformer.parameters() if p.requires_grad], lr=self.lr)

    # The frozen VGG-16 is rebuilt from its own weights file; keeping 30-60 MB of it in every
    # checkpoint would only make checkpoints large.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("loss.vgg.")]:
            del state[key]
        checkpoint["style_names"] = self.style_names

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.loss.vgg.state_dict(prefix="loss.vgg.").items():
            state.setdefault(key, value)
