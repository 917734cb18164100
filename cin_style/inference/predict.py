"""Stylizing a large folder on several devices through Lightning's predict loop.

Each process of a DDP run (the same ``strategy="ddp"`` that training uses, one process per
GPU, or gloo processes on a CPU) takes its share of the photos through Lightning's
distributed sampler, stylizes them with :meth:`cin_style.StyleModel.stylize` (so every option
of the single-device path applies: blends, masks, strength, colour preservation, tiling) and
writes its own results. Files are read by :class:`PhotoFiles` and written by
:class:`ImageFileWriter`; :class:`StylizeModule` itself sees only tensors and images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:  # the loop takes the caller's StyleModel and builds its kind in each process
    from cin_style.inference.style_model import StyleModel
from cin_style.io.images import ImageLoadError, failure_line, load_image, save_image

__all__ = ["StylizeModule", "PhotoFiles", "ImageFileWriter", "stylize_files"]


class StylizeModule(L.LightningModule):
    """Lightning's predict loop around :meth:`StyleModel.stylize` with fixed options.

    ``predict_step`` takes ``(index, photo)``, with ``photo`` anything :meth:`StyleModel.stylize`
    takes (or an error message for a photo that could not be read), and returns ``(index, result or error)``.
    """

    def __init__(self, model: StyleModel, *, style: Any, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.transformer = model.transformer
        self.styles = list(model.styles)
        self.style = style
        self.options = dict(options or {})
        # Each process rebuilds the engine the caller's model runs (cin_style.inference.engines) by
        # its name, so that it paints as the one-process path does.
        self.engine, self.source = model.engine.name, model.source
        self._kind = type(model)
        self._styler: StyleModel | None = None

    def on_predict_start(self) -> None:
        # The CPU-only engines (bfloat16, the ONNX graph) give way to "auto" on a GPU.
        engine = "auto" if self.device.type != "cpu" and self.engine in ("bf16", "onnx") else self.engine
        self._styler = self._kind(self.transformer, self.styles, device=self.device, engine=engine, source=self.source)

    def predict_step(self, batch: tuple[int, Any], batch_idx: int) -> tuple[int, Any]:
        index, photo = batch
        if isinstance(photo, str):
            return index, photo
        assert self._styler is not None
        try:
            return index, self._styler.stylize(photo, style=self.style, **self.options)
        except (ValueError, OSError) as err:
            return index, str(err)


class PhotoFiles(Dataset):
    """``(index, PIL image)`` for each file, or ``(index, "file: reason")`` where it cannot be read.

    Photos stay PIL images, as on the one-device path, so that ``size=`` resizes them the same way."""

    def __init__(self, files: Sequence[Path], *, max_pixels: int | None = None) -> None:
        self.files = list(files)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        try:
            return index, load_image(self.files[index], max_pixels=self.max_pixels)
        except ImageLoadError as err:
            return index, str(err)


class ImageFileWriter(BasePredictionWriter):
    """Writes each prediction to its output path as it comes; collects the failures of all processes."""

    def __init__(self, outputs: Sequence[Path], *, quality: int = 95, sources: Sequence[Path] = ()) -> None:
        super().__init__(write_interval="batch")
        self.outputs = list(outputs)
        self.sources = list(sources)
        self.quality = quality
        self.written: set[int] = set()
        self.failures: dict[int, str] = {}  # by input index
        #: Whether this is the first process of the run, the one that reports for all.
        self.is_global_zero = True

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        index, image = prediction
        if isinstance(image, str):
            self.failures[index] = failure_line(self.sources[index], image) if self.sources else image
            return
        try:
            save_image(image, self.outputs[index], quality=self.quality)
            self.written.add(index)
        except (OSError, ValueError) as err:
            self.failures[index] = f"{self.outputs[index]}: {err}"

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Gather every process's results, so that the first process can report them all."""
        self.is_global_zero = trainer.is_global_zero
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (self.written, self.failures))
            for written, failures in gathered:
                self.written |= written
                self.failures.update(failures)
        # The distributed sampler pads the last round with repeats: a photo that failed once failed everywhere.
        self.written -= set(self.failures)

    @property
    def failure_lines(self) -> list[str]:
        """One line per failed file, in input order."""
        return [self.failures[i] for i in sorted(self.failures)]


def stylize_files(
    model: StyleModel,
    pairs: Sequence[tuple[Path, Path]],
    *,
    style: Any,
    options: dict[str, Any] | None = None,
    devices: int | str = 1,
    quality: int = 95,
    max_pixels: int | None = None,
    progress: bool = True,
) -> ImageFileWriter:
    """Stylize each (source, output) pair's file on ``devices`` devices of the model's kind (DDP
    when more than one; CPU processes for a model on the CPU).

    Returns the writer, whose ``written`` and ``failure_lines`` (in input order) cover
    every process. With more than one device, Lightning starts the other processes by re-running
    this program's command line, so call it from a script or the command line, not from a notebook.
    """
    files = [Path(src) for src, _ in pairs]
    writer = ImageFileWriter([Path(dst) for _, dst in pairs], quality=quality, sources=files)
    trainer = L.Trainer(
        accelerator="cpu" if model.device.type == "cpu" else "auto",
        devices=devices,
        strategy="ddp" if devices not in (1, "1") else "auto",
        callbacks=[writer],
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    loader = DataLoader(PhotoFiles(files, max_pixels=max_pixels), batch_size=None, shuffle=False, num_workers=min(2, os.cpu_count() or 1))
    trainer.predict(StylizeModule(model, style=style, options=options), loader, return_predictions=False)
    return writer
