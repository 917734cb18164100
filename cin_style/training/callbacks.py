"""The Lightning callbacks (and the checkpoint writer) of a training run.

Which callbacks a run uses, and their settings, is the ``callbacks`` config group
(``conf/callbacks/default.yaml``); :func:`cin_style.training.train.train` gives each what only
the run knows (its folder, its data) and adds the progress display that suits the output.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar, Timer
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from cin_style.io.files import atomic_path
from cin_style.io.images import save_image, to_pil
from cin_style.training.data import StyleTransferDataModule

__all__ = ["AtomicCheckpointIO", "LastStepCheckpoint", "SampleGridWriter", "NonFiniteLossGuard", "StopOnSignal", "Throughput", "ProgressLines", "StepProgressBar", "DataRecord"]

#: print, in the first process of a distributed run only.
_say = rank_zero_only(print)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it and renames it into place.

    Lightning's own writer stages the file in the system temp folder and then moves it; when
    that folder is on another file system (a tmpfs /tmp, say) the move is a copy into the
    real name, and a kill during the copy leaves a truncated ``last.ckpt``. A rename within
    one folder is atomic: a killed run keeps its previous checkpoint whole.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class LastStepCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus ``last.ckpt`` at the step the run ends on.

    Lightning writes ``last`` at the periodic checkpoints and, at the end of training, only if
    none was written before; a run stopped by ``trainer.max_time`` between two periodic
    checkpoints lost every step since the last one (94 of run 4 of the bundled model).
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)


class SampleGridWriter(Callback):
    """Saves a validation grid (photos × styles) as ``samples/step_NNNNNN.jpg`` at each validation.

    The grid shows the first ``num_images`` photos of the first validation batch; it also goes
    to TensorBoard when that is the logger.
    """

    def __init__(self, folder: str | os.PathLike, *, num_images: int = 4) -> None:
        self.folder = Path(folder)
        self.num_images = num_images
        self._content: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            self._content = batch[: self.num_images]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        content, self._content = self._content, None
        if content is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        grid = pl_module.sample_grid(content)
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard
            experiment.add_image("samples", grid, trainer.global_step)
        save_image(to_pil(grid), self.folder / f"step_{trainer.global_step:06d}.jpg", quality=92)


class NonFiniteLossGuard(Callback):
    """Stops the run with a clear message when the loss becomes NaN or infinite.

    The last checkpoint on disk is the last good one: the guard stops before anything from
    the bad step is saved.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"the training loss became {float(loss)} at step {trainer.global_step}; stopping. "
                "The last checkpoint is from before this step. Try a lower optim.lr or loss weights."
            )


class StopOnSignal(Callback):
    """Ctrl-C (SIGINT) or SIGTERM ends the run after the current step, as ``trainer.max_time`` does:
    ``last.ckpt`` and the run's model file are written at that step and the next run can start
    from them. A second signal aborts at once.

    Lightning's own handling of both signals exits without a final checkpoint, losing every step
    since the last periodic one; a long CPU run is stopped by hand often enough for that to matter.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread

        def stop(signum: int, frame: Any) -> None:
            if self.received is not None:  # the second signal: abort now
                self._restore()
                raise KeyboardInterrupt
            self.received = signal.Signals(signum).name
            trainer.should_stop = True
            _say(f"\n{self.received}: stopping after this step and saving it (again to abort now)")

        self._previous = {s: signal.signal(s, stop) for s in self.SIGNALS}

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()


class Throughput(Callback):
    """Training images per second after a warm-up (compilation, caches, the first batches)."""

    def __init__(self, warmup_steps: int = 10) -> None:
        self.warmup_steps = warmup_steps
        self.start: float | None = None
        self.end: float | None = None
        self.images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.start is None:
            if trainer.global_step >= min(self.warmup_steps, max(1, trainer.max_steps // 2)):
                self.start = now
            return
        self.images += batch.shape[0] * trainer.world_size
        self.end = now

    @property
    def images_per_second(self) -> float | None:
        if self.start is None or self.end is None or self.end <= self.start:
            return None
        return self.images / (self.end - self.start)


class ProgressLines(Callback):
    """One line of progress every ``every`` seconds, for output that is not a terminal.

    A live progress bar draws nothing into a file until the run ends, so a run in the background
    (``nohup cin-style train ... > run.log``) would show no sign of life for hours. The line says
    the step, the loss, the images per second since the run began and the time left (to
    ``trainer.max_steps`` at that pace, or to ``trainer.max_time``, whichever comes first).
    """

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.start = self.last = 0.0
        self.first_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.last = time.monotonic()
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        if now - self.last < self.every or not trainer.is_global_zero:
            return
        self.last = now
        step, elapsed = trainer.global_step, now - self.start
        rate = (step - self.first_step) * batch.shape[0] * trainer.world_size / elapsed
        parts = [f"step {step}" + (f"/{trainer.max_steps}" if trainer.max_steps > 0 else "")]
        loss = trainer.callback_metrics.get("loss")
        if loss is not None:
            parts.append(f"loss {float(loss):.3f}")
        parts.append(f"{rate:.2f} images/s")
        parts.append(f"elapsed {_clock(elapsed)}")
        left = []
        if trainer.max_steps > 0 and step > self.first_step:
            left.append((trainer.max_steps - step) * elapsed / (step - self.first_step))
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and timer.time_remaining("train") is not None:
            left.append(timer.time_remaining("train"))
        if left:
            parts.append(f"left ~{_clock(max(0.0, min(left)))}")
        print("  ".join(parts), flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class StepProgressBar(RichProgressBar):
    """Lightning's bar without a count of epochs where there is none: a run ends at
    ``trainer.max_steps`` or ``trainer.max_time``, and the stock label reads "Epoch 36/-2"."""

    def _get_train_description(self, current_epoch: int) -> str:
        epochs = self.trainer.max_epochs
        label = f"Epoch {current_epoch}" + (f"/{epochs - 1}" if epochs is not None and epochs > 0 else "")
        return f"{label:{len(self.validation_description)}}"


class DataRecord(Callback):
    """Stores in every checkpoint what evaluation needs to rebuild the style targets.

    The style size and the paintings' file names (not their paths, which are machine
    specific) travel into exported model files, so ``cin-style evaluate`` can find the
    paintings by name and take Gram targets exactly as training did.
    """

    def __init__(self, data: StyleTransferDataModule, *, base_style_files: dict[str, str] | None = None) -> None:
        self.record = {
            "image_size": data.image_size,
            "style_size": data.style_size,
            "style_files": {**(base_style_files or {}), **{s.name: Path(s.path).name for s in data.paintings}},
        }

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["cin_style_data"] = dict(self.record)
