"""The LightningModule: one :class:`StyleTransformer` trained jointly on N styles.

Each step draws a style per sample (a mixed-style batch, as Magenta trains), stylizes the
photos with that style's gamma/beta rows and scores each output against its own photo and
its own style's Gram targets. Nothing here reads or writes files: the style images come in
through :meth:`set_style_targets`, and :meth:`sample_grid` returns pictures for whoever
saves them (the training script's callback).
"""

from __future__ import annotations

import math

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from cin_style.losses.perceptual import LossConfig, LossTerms, PerceptualLoss, balance_weights
from cin_style.network.transformer import StyleTransformer, one_hot_styles
from cin_style.losses.stability import perturb, stability_loss
from cin_style.network.styles import IDENTITY

__all__ = ["StyleTransferModule"]


def lr_factor(step: int, decay_steps: int, final_fraction: float) -> float:
    """The learning rate's share at ``step``: 1 at step 0, a half cosine down to ``final_fraction``
    at ``decay_steps``, then ``final_fraction``."""
    done = min(step, decay_steps) / decay_steps
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * done))


class StyleTransferModule(L.LightningModule):
    """Train a conditional-instance-norm transformer on ``style_names``.

    Args:
        style_names: the styles, in the order of the gamma/beta tables.
        width: channel multiplier of the transformer.
        num_residual_blocks: residual blocks of the transformer (5, as Magenta and Johnson et al.).
        loss: the fields of :class:`~cin_style.losses.perceptual.LossConfig` (layers, weights, ``vgg_weights``...);
            the defaults for those not given.
        style_multipliers: multiplier of a style's style loss, by style name (default 1; the
            identity row has no painting and no style loss).
        balance_reference: the balanced objective (``loss.balance=gatys``): each trained style's
            reference total, by name (:func:`cin_style.losses.optimize.reference_totals`). Each sample's
            total is divided by its style's reference (:func:`~cin_style.losses.perceptual.balance_weights`;
            the identity row's by the mean reference), so the shared convolutions minimize the
            sum of the per-style ratios instead of following the styles with the largest losses.
            The logged ``train/total`` and ``val/total`` stay unweighted; ``val/ratio`` is the
            validation photos' mean ratio to the references. None: every sample weighs its total.
        lr: Adam learning rate.
        style_lr: Adam learning rate of the per-style tables (gamma/beta and the photo skip's
            gains; default ``lr``). Each row sees only its own style's samples, about 1/N of them,
            and Adam moves a parameter by about the learning rate per step whatever its gradient,
            so at 1e-3 the rows need thousands of steps to travel the O(1) distances that tell
            styles apart while the shared convolutions are already converging; a larger rate lets
            the styles separate sooner.
        lr_decay_steps: lower both learning rates along a half cosine over this many steps, to
            ``final_lr_fraction`` of their values, and keep them there (default: constant). A
            network's loss at a constant rate sits on a noise floor that Adam's step size sets;
            lowering the rate at the end of a run lets it settle below that floor.
        final_lr_fraction: the learning rates' share left after ``lr_decay_steps``.
        style_sampling: ``"uniform"`` draws each sample's style at random; ``"cycle"``
            assigns styles in turn so every style is seen equally often.
        identity_weight: weight of the pixel MSE that trains the ``"identity"`` row (when
            ``style_names`` has one) to reproduce the photo; it is the strength dial's zero.
        identity_share: with ``"uniform"`` sampling, the fraction of samples drawn for the identity
            row (default: its fair share, 1/N). Reproducing photos asks the shared convolutions to
            keep fine detail and saturated colour, which no painting asks for, so at 1/21 of the
            samples the row lags far behind the styles; a larger share feeds it more photos.
        frozen_styles: the first ``frozen_styles`` rows and every convolution stay exactly as
            they are (adding styles to a trained network); only the later rows are trained.
        seed: seeds each step's style draw, which depends only on (seed, step) and the sample's
            place in the global batch, so that N processes (DDP) draw what one process would.
        stability_weight: weight of the stability term (:mod:`cin_style.losses.stability`; 0: off): each
            photo is also stylized as a slightly shifted, brightened and noisy copy, and the two
            outputs may differ only as much as the two photos do. Costs one more transformer pass.
        stability_shift, stability_noise, stability_brightness: the perturbation's largest shift
            (pixels), noise standard deviation and brightness change (fraction).
        channels_last: keep the transformer and VGG-16 in NHWC memory (faster convolutions on GPUs).
        compile: run the transformer and the loss through ``torch.compile`` as one graph, so
            that norms, activations and Gram matrices fuse into few kernels (GPU experiments).
    """

    def __init__(
        self,
        *,
        style_names: Sequence[str],
        width: float = 1.0,
        num_residual_blocks: int = 5,
        loss: Mapping[str, Any] | None = None,
        style_multipliers: Mapping[str, float] | None = None,
        balance_reference: Mapping[str, float] | None = None,
        lr: float = 1e-3,
        style_lr: float | None = None,
        lr_decay_steps: int | None = None,
        final_lr_fraction: float = 0.1,
        style_sampling: str = "uniform",
        identity_weight: float = 1000.0,
        identity_share: float | None = None,
        frozen_styles: int = 0,
        seed: int = 0,
        stability_weight: float = 0.0,
        stability_shift: int = 4,
        stability_noise: float = 0.02,
        stability_brightness: float = 0.05,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if not style_names:
            raise ValueError("at least one style is needed")
        if style_sampling not in ("uniform", "cycle"):
            raise ValueError(f"style_sampling must be 'uniform' or 'cycle', got {style_sampling!r}")
        if not 0 <= frozen_styles < len(style_names):
            raise ValueError(f"frozen_styles must leave at least one of the {len(style_names)} styles to train, got {frozen_styles}")
        if lr_decay_steps is not None and lr_decay_steps < 1:
            raise ValueError(f"lr_decay_steps must be a positive number of steps or None, got {lr_decay_steps}")
        if not 0 < final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction must be in (0, 1], got {final_lr_fraction}")
        if identity_share is not None:
            if IDENTITY not in style_names[frozen_styles:] or len(style_names) - frozen_styles < 2:
                raise ValueError("identity_share needs a trained identity row and at least one trained style beside it")
            if style_sampling != "uniform":
                raise ValueError("identity_share works with style_sampling='uniform'")
            if not 0 < identity_share < 1:
                raise ValueError(f"identity_share must be between 0 and 1, got {identity_share}")
        self.save_hyperparameters()
        self.style_names = list(style_names)
        self.transformer = StyleTransformer(num_styles=len(self.style_names), width=width, num_residual_blocks=num_residual_blocks)
        unknown = sorted(set(style_multipliers or {}) - set(self.style_names))
        if unknown:
            raise ValueError(f"style_multipliers for unknown style(s) {', '.join(unknown)}")
        multipliers = [0.0 if name == IDENTITY else float((style_multipliers or {}).get(name, 1.0)) for name in self.style_names]
        self.identity_index = self.style_names.index(IDENTITY) if IDENTITY in self.style_names else None
        self.loss = PerceptualLoss(num_styles=len(self.style_names), config=LossConfig(**dict(loss or {})), style_multipliers=multipliers)
        self.balance: Tensor | None = None
        if balance_reference is not None:
            self.set_balance(balance_reference)
        self.style_lr = lr if style_lr is None else style_lr  # the other settings are read from self.hparams
        self.stability = {"shift": stability_shift, "noise": stability_noise, "brightness": stability_brightness}
        if frozen_styles:
            self._freeze(frozen_styles)
        if channels_last:
            self.transformer.to(memory_format=torch.channels_last)
            self.loss.vgg.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self._scored = torch.compile(self._score, dynamic=False) if compile else self._score

    def set_balance(self, reference: Mapping[str, float]) -> None:
        """Turn on the balanced objective with these reference totals (see ``balance_reference``);
        they are kept in the hyperparameters, so checkpoints and model files record them."""
        unreferenced = [IDENTITY, *self.style_names[: self.hparams.frozen_styles]]  # no painting, or never trained here
        self.balance = balance_weights(self.style_names, reference, unreferenced=unreferenced)
        self.hparams["balance_reference"] = {name: float(value) for name, value in reference.items()}

    def _freeze(self, rows: int) -> None:
        """Keep every convolution and the first ``rows`` rows of every style table exactly as they are."""
        tables = self.transformer.style_tables()
        for name, param in self.transformer.named_parameters():
            if name not in tables:
                param.requires_grad_(False)
            else:
                # Zero gradients stay zero through Adam (no weight decay), so these rows do not move at all.
                param.register_hook(lambda grad, rows=rows: torch.cat([torch.zeros_like(grad[:rows]), grad[rows:]]))

    @property
    def trainable_styles(self) -> list[int]:
        return list(range(self.hparams.frozen_styles, self.num_styles))

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
        """Each sample's style for this step.

        The draw is made for the whole global batch (every process's samples) from ``(seed,
        step)`` alone, and this process takes every ``world_size``-th pick from its rank on,
        the samples the sharded sampler (:class:`cin_style.training.data.ShardedRandomSampler`) gives it.
        So a run on N processes trains on exactly the (photo, style) pairs of a run on one.
        """
        n = len(self.trainable_styles)
        trainer = self._trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        total = batch_size * world
        if self.hparams.style_sampling == "cycle":
            picks = torch.arange(self.global_step * total, (self.global_step + 1) * total) % n
        else:
            generator = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
            picks = torch.randint(0, n, (total,), generator=generator)
            if self.hparams.identity_share is not None:
                # The identity row with probability identity_share, else one of the other rows uniformly.
                identity = self.identity_index - self.hparams.frozen_styles
                others = torch.randint(0, n - 1, (total,), generator=generator)
                others = others + (others >= identity).long()
                picks = torch.where(torch.rand(total, generator=generator) < self.hparams.identity_share, identity, others)
        return picks[rank::world] + self.hparams.frozen_styles  # on the CPU: logging per style needs no device sync

    def losses(self, output: Tensor, content: Tensor, style_index: Tensor) -> LossTerms:
        """The perceptual loss terms; samples of the identity row add its pixel loss to their content term
        (reproducing the photo is a content objective, and their style term is zero)."""
        terms = self.loss(output, content, style_index)
        if self.identity_index is not None:
            is_identity = (style_index == self.identity_index).float()
            pixel = F.mse_loss(output.float(), content.float(), reduction="none").flatten(1).mean(1)
            terms.content = terms.content + self.hparams.identity_weight * is_identity * pixel
        return terms

    def score(self, batch: Tensor, style_index: Tensor) -> LossTerms:
        """Stylize ``batch`` with each sample's style and score it, with the stability term when it is on.

        The perturbed copy is made here, outside the compiled graph: its shift is a Python
        number that picks slices, and inside ``torch.compile`` every new shift would compile
        the graph again. The graph sees only a photo-shaped tensor."""
        p = None
        if self.hparams.stability_weight:
            # The perturbation's random numbers come from (seed, step), like the style draw, so that
            # every process of a distributed run perturbs as one process would.
            generator = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step + 7_919)
            p = perturb(batch, generator=generator, **self.stability)
        terms, output, perturbed_output = self._scored(batch, style_index, p.perturbed if p is not None else None)
        if p is not None:
            terms.stability = self.hparams.stability_weight * stability_loss(output, perturbed_output, batch, p)
        return terms

    def _score(self, batch: Tensor, style_index: Tensor, perturbed: Tensor | None) -> tuple[LossTerms, Tensor, Tensor | None]:
        """The graph ``compile`` compiles: the outputs for the batch (and its perturbed copy) and their losses."""
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        style = one_hot_styles(style_index, self.num_styles).to(batch)
        output = self.transformer(batch, style)
        terms = self.losses(output, batch, style_index)
        if perturbed is None:
            return terms, output, None
        if self.channels_last:
            perturbed = perturbed.contiguous(memory_format=torch.channels_last)
        return terms, output, self.transformer(perturbed, style)

    def objective(self, terms: LossTerms, style_index: Tensor) -> Tensor:
        """What the optimizer minimizes: the batch's mean total, each sample's divided by its
        style's reference when the objective is balanced (:meth:`set_balance`)."""
        if self.balance is None:
            return terms.total.mean()
        return (terms.total * self.balance.to(terms.total.device)[style_index.to(terms.total.device)]).mean()

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        drawn = self.draw_styles(batch.shape[0])
        terms = self.score(batch, drawn.to(self.device, non_blocking=True))
        means = terms.means()
        objective = self.objective(terms, drawn)
        if self.balance is not None:
            self.log("train/balanced", objective.detach(), batch_size=batch.shape[0])
        self.log_dict({f"train/{k}": v for k, v in means.items()}, prog_bar=False, batch_size=batch.shape[0])
        self.log("loss", means["total"], prog_bar=True, logger=False, batch_size=batch.shape[0])
        if self.hparams.lr_decay_steps is not None:  # where the schedule stands (the shared convolutions' rate)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=batch.shape[0])
        total = terms.total.detach()
        for s in drawn.unique().tolist():
            picked = drawn == s
            self.log(f"train_style/{self.style_names[s]}", total[picked.to(self.device)].mean(), batch_size=int(picked.sum()))
        return objective

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        b = batch.shape[0]
        for s in self.trainable_styles:
            index = torch.full((b,), s, device=batch.device, dtype=torch.long)
            terms = self.losses(self.transformer(batch, one_hot_styles(index, self.num_styles).to(batch)), batch, index)
            # Every process validates every photo, so averaging across processes changes nothing
            # but keeps the logged values identical on all of them.
            for key, value in terms.means().items():
                self.log(f"val/{key}", value, batch_size=b * len(self.trainable_styles), on_epoch=True, sync_dist=True)
            self.log(f"val_style/{self.style_names[s]}", terms.total.mean(), batch_size=b, on_epoch=True, sync_dist=True)
            if self.balance is not None and s != self.identity_index:
                self.log("val/ratio", terms.total.mean() * float(self.balance[s]), batch_size=b, on_epoch=True, sync_dist=True)

    @torch.no_grad()
    def sample_grid(self, content: Tensor) -> Tensor:
        """A (3, H, W) grid: one row per photo, the photo first, then every style."""
        rows = []
        for image in content:
            batch = image.unsqueeze(0).expand(self.num_styles, -1, -1, -1)
            styles = torch.eye(self.num_styles, device=image.device, dtype=image.dtype)
            rows += [image.unsqueeze(0), self.transformer(batch, styles)]
        return make_grid(torch.cat(rows).float().cpu(), nrow=self.num_styles + 1, padding=2, pad_value=1.0)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        tables = self.transformer.style_tables()
        trainable = [(name, p) for name, p in self.transformer.named_parameters() if p.requires_grad]
        rows = [p for name, p in trainable if name in tables]
        convs = [p for name, p in trainable if name not in tables]
        groups = [{"params": convs, "lr": self.hparams.lr}] if convs else []
        optimizer = torch.optim.Adam([*groups, {"params": rows, "lr": self.style_lr}], lr=self.hparams.lr)
        if self.hparams.lr_decay_steps is None:
            return optimizer
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, self.hparams.lr_decay_steps, self.hparams.final_lr_fraction))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

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
