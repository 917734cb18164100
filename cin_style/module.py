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
from torch import Tensor
from torchvision.utils import make_grid

from .loss import PerceptualLoss
from .model import StyleTransformer, one_hot_styles

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
    ) -> None:
        super().__init__()
        if not style_names:
            raise ValueError("at least one style is needed")
        if style_sampling not in ("uniform", "cycle"):
            raise ValueError(f"style_sampling must be 'uniform' or 'cycle', got {style_sampling!r}")
        self.save_hyperparameters()
        self.style_names = list(style_names)
        self.transformer = StyleTransformer(num_styles=len(self.style_names), width=width)
        self.loss = PerceptualLoss(num_styles=len(self.style_names), style_multipliers=style_multipliers, **dict(loss or {}))
        self.lr = lr
        self.style_sampling = style_sampling

    @property
    def num_styles(self) -> int:
        return len(self.style_names)

    def set_style_targets(self, images: Sequence[Tensor]) -> None:
        """Compute the Gram targets from one painting per style, in ``style_names`` order."""
        self.loss.set_style_targets(images)

    def forward(self, images: Tensor, style: Tensor) -> Tensor:
        return self.transformer(images, style)

    def draw_styles(self, batch_size: int) -> Tensor:
        if self.style_sampling == "cycle":
            start = self.global_step * batch_size
            return torch.arange(start, start + batch_size, device=self.device) % self.num_styles
        return torch.randint(0, self.num_styles, (batch_size,), device=self.device)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        style_index = self.draw_styles(batch.shape[0])
        output = self.transformer(batch, one_hot_styles(style_index, self.num_styles).to(batch))
        terms = self.loss(output, batch, style_index)
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
        for s, name in enumerate(self.style_names):
            index = torch.full((b,), s, device=batch.device, dtype=torch.long)
            terms = self.loss(self.transformer(batch, one_hot_styles(index, self.num_styles).to(batch)), batch, index)
            for key, value in terms.means().items():
                self.log(f"val/{key}", value, batch_size=b * self.num_styles, on_epoch=True)
            self.log(f"val_style/{name}", terms.total.mean(), batch_size=b, on_epoch=True)

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
        return torch.optim.Adam(self.transformer.parameters(), lr=self.lr)

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
