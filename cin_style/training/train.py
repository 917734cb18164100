"""Training from a composed Hydra config: builds the data, module, logger and trainer, then fits.

Everything a run writes goes under its run folder (Hydra's output directory):
``config.yaml`` (the resolved config), ``checkpoints/`` (``last.ckpt`` and periodic ones),
the logs (TensorBoard when installed, CSV otherwise) and ``samples/`` (validation photo ×
style grids as JPEG).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE
from omegaconf import DictConfig, OmegaConf

from cin_style.io.files import atomic_path
from cin_style.io.modelfile import read_model
from cin_style.io.paintings import find_paintings
from cin_style.network.styles import IDENTITY
from cin_style.training.callbacks import _say  # print, in the first process of a distributed run only
from cin_style.training.callbacks import (  # re-exported: they lived here before the callbacks module
    AtomicCheckpointIO,
    DataRecord,
    LastStepCheckpoint,
    NonFiniteLossGuard,
    ProgressLines,
    SampleGridWriter,
    StepProgressBar,
    StopOnSignal,
    Throughput,
)
from cin_style.training.data import StyleTransferDataModule
from cin_style.training.module import StyleTransferModule

__all__ = ["main", "train", "build_callbacks", "auto_precision", "TrainingConfigError", "init_from", "export_run_model", "AtomicCheckpointIO", "LastStepCheckpoint", "DataRecord", "SampleGridWriter", "NonFiniteLossGuard", "StopOnSignal", "ProgressLines"]



#: Messages of Lightning and PyTorch that a cin-style user cannot act on, silenced by their text
#: (every other warning still shows): the frozen VGG-16 is in eval mode on purpose; LeafSpec is a
#: deprecation inside Lightning's own code; the tip advertises a cloud service.
_HARMLESS_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
_HARMLESS_LOG_LINES = ("litlogger",)


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _HARMLESS_LOG_LINES)


def quiet_known_noise() -> None:
    """Silence exactly the known-harmless messages, and print Lightning's log lines once.

    Lightning gives its loggers console handlers of their own when the root logger has none at
    import; under Hydra the root logger has one too, and every line came out twice. When the
    root logger prints (Hydra: to the console and the run's log file), Lightning's lines go there alone.
    """
    for pattern in _HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    noise = _DropHarmless()
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropHarmless) for f in logger.filters):
            logger.addFilter(noise)
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True


def build_callbacks(cfg: DictConfig, run_dir: Path, data: StyleTransferDataModule, *, base_style_files: dict[str, str] | None = None) -> list:
    """The run's callbacks from the ``callbacks`` config group (each entry a ``_target_``; null
    leaves it out), each given what only the run knows: the checkpoint folder (and
    ``keep_all_checkpoints``), the samples folder, the data's record. Progress goes to the output
    as suits it: a live bar on a terminal, else lines every ``progress_every`` seconds."""
    run_arguments = {
        "checkpoint": {"dirpath": run_dir / "checkpoints", **({"save_top_k": -1} if cfg.get("keep_all_checkpoints") else {})},
        "samples": {"folder": run_dir / "samples"},
        "data_record": {"data": data, "base_style_files": base_style_files},
    }
    callbacks = [
        instantiate(spec, **run_arguments.get(key, {}), _convert_="all") for key, spec in (cfg.get("callbacks") or {}).items() if spec is not None
    ]
    if not sys.stdout.isatty():
        callbacks.append(ProgressLines(every=float(cfg.progress_every)))
    if cfg.trainer.get("enable_progress_bar", True) and _RICH_AVAILABLE:  # else Lightning's tqdm bar, whose label has no epoch count
        callbacks.append(StepProgressBar())
    return callbacks


def _new_style_entries(cfg: DictConfig, old_styles: list[str]) -> list[dict[str, str]]:
    """``new_styles`` (painting names in the style folder, or {name, path} entries) as data.styles entries."""
    new = cfg.get("new_styles")
    if not new:
        raise TrainingConfigError("base_model needs new_styles: the paintings to add, e.g. 'new_styles=[van_gogh_village_street_in_auvers]'")
    named = [item for item in new if isinstance(item, str) and item != IDENTITY]
    found = find_paintings(Path(str(cfg.data_root)) / "styles", named)
    entries = [{"name": item, "path": str(found[item])} if isinstance(item, str) else dict(item) for item in new if item != IDENTITY]
    clash = sorted({e["name"] for e in entries} & set(old_styles))
    if clash:
        raise TrainingConfigError(f"the base model already has style(s) {', '.join(clash)}")
    return entries


class TrainingConfigError(ValueError):
    """A training config that cannot work as given; ``cin-style train`` reports it in one line."""


def init_from(transformer: torch.nn.Module, source: torch.nn.Module, source_styles: list[str], styles: list[str], *, seed: int = 0) -> int:
    """Copy ``source``'s weights into ``transformer`` (same depth): every convolution, and the
    gamma/beta rows of the styles the two share by name. A style ``source`` lacks starts from the
    mean of its rows (as when adding styles). A ``source`` narrower than ``transformer`` is first
    widened to its width, computing the same function (:meth:`StyleTransformer.widened`, its
    random shares drawn from ``seed``). Returns how many styles were copied."""
    theirs, ours = source.config, transformer.config
    if theirs.num_residual_blocks != ours.num_residual_blocks or theirs.width > ours.width:
        raise TrainingConfigError(
            f"init_model has width {theirs.width} and {theirs.num_residual_blocks} residual blocks; this run has width "
            f"{ours.width} and {ours.num_residual_blocks} (set model.num_residual_blocks to match, and model.width to "
            f"{theirs.width} or more)"
        )
    if theirs.width < ours.width:
        source = source.widened(ours.width, generator=torch.Generator().manual_seed(seed))
    rows = [source_styles.index(n) if n in source_styles else None for n in styles]
    transformer.load_state_dict(source.with_style_rows(rows).state_dict())
    return sum(r is not None for r in rows)


def balance_reference(cfg: DictConfig, data: StyleTransferDataModule, module: StyleTransferModule, run_dir: Path, init_training: dict | None) -> dict[str, float] | None:
    """The balanced objective's reference total per trained painting (``loss.balance=gatys``), or None.

    Computed once per run and kept in ``balance.json`` in the run folder (a resumed run reads it
    back); a run that starts from a model file trained with the same balance settings takes that
    file's recorded references. Computing them runs the optimization method on
    ``loss.balance_photos`` training photos (evenly spaced in the folder's sorted list, centre
    crops) for every painting, with a progress line per painting.
    """
    import json

    loss = cfg.loss
    if loss.get("balance", "none") == "none":
        return None
    size = int(loss.get("balance_size") or cfg.data.image_size)
    settings = {"balance": loss.balance, "balance_photos": int(loss.balance_photos), "balance_steps": int(loss.balance_steps), "balance_size": size}
    needed = [module.style_names[i] for i in module.trainable_styles if module.style_names[i] != IDENTITY]
    stored = run_dir / "balance.json"
    sources = [(stored, json.loads(stored.read_text()) if stored.is_file() else None)]
    if init_training is not None:
        sources.append((Path(str(cfg.init_model)), {**{k: init_training.get(k) for k in settings}, "reference": init_training.get("balance_reference")}))
    for where, record in sources:
        reference = (record or {}).get("reference") or {}
        if record and all(record.get(k) == v for k, v in settings.items()) and set(needed) <= set(reference):
            _say(f"loss.balance={loss.balance}: the references of {where}")
            reference, photos = {name: float(reference[name]) for name in needed}, record.get("photos")
            break
    else:
        reference, photos = _compute_reference(settings, data, module, needed)
    if not stored.is_file():
        with atomic_path(stored) as tmp:
            Path(tmp).write_text(json.dumps({**settings, "photos": photos, "reference": reference}, indent=2))
    return reference


def _compute_reference(
    settings: dict[str, Any], data: StyleTransferDataModule, module: StyleTransferModule, needed: list[str]
) -> tuple[dict[str, float], list[str]]:
    from cin_style.io.paintings import load_center_crops
    from cin_style.losses.optimize import reference_totals

    data.setup("fit")
    files, size = data.train_set.files, settings["balance_size"]
    picks = [files[round(i * (len(files) - 1) / max(1, settings["balance_photos"] - 1))] for i in range(min(settings["balance_photos"], len(files)))]
    photos = load_center_crops(picks, size).to(module.device)
    paintings = dict(zip(data.style_names, data.load_style_images()))
    _say(f"loss.balance={settings['balance']}: {settings['balance_steps']} L-BFGS steps of Gatys et al. on {len(picks)} training photo(s) at {size} px, for {len(needed)} painting(s) (once per run)")
    started = time.perf_counter()

    def done(name: str, total: float) -> None:
        _say(f"  reference {name}: {total:.4f} ({time.perf_counter() - started:.0f} s)")

    reference = reference_totals(photos, {n: paintings[n] for n in needed}, loss=module.loss, steps=settings["balance_steps"], progress=done)
    return reference, [str(p) for p in picks]


def export_run_model(checkpoint: str | os.PathLike, out: str | os.PathLike, *, manifest: str | os.PathLike | None = None) -> Path:
    """Write a run's last checkpoint as a standalone model file (float32, so that it can start the next run),
    with each painting's credits when the data's MANIFEST.csv covers every style."""
    from cin_style.io.modelfile import ModelFileError, credits_from_manifest, write_model

    loaded = read_model(checkpoint)
    credits = None
    if manifest is not None and Path(manifest).is_file():
        try:
            credits = credits_from_manifest(manifest, loaded.styles, loaded.training)
        except ModelFileError:
            credits = None  # paintings of the user's own: the model is as good without credits
    return write_model(out, loaded.transformer, loaded.styles, training=loaded.training, credits=credits)


def auto_precision(accelerator: str) -> str:
    """What ``trainer.precision=auto`` means on this machine: ``bf16-mixed`` where the hardware
    multiplies bfloat16 natively (a CUDA GPU that supports it; a CPU with AMX or AVX-512 BF16,
    :func:`cin_style.network.fastconv.native_bf16`), else ``32-true`` (on other CPUs bfloat16 is
    emulated, 16 times slower than float32 on the project's AMD EPYC; ``benchmarks/RESULTS.md``)."""
    from cin_style.network.fastconv import native_bf16

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if native_bf16() else "32-true"


def _slow_cpu_bf16(trainer: L.Trainer) -> bool:
    """Whether the run autocasts to bfloat16 on a CPU that has no native bfloat16 arithmetic."""
    from lightning.pytorch.accelerators import CPUAccelerator

    from cin_style.network.fastconv import native_bf16

    bf16 = "bf16" in str(getattr(trainer.precision_plugin, "precision", ""))
    return bf16 and isinstance(trainer.accelerator, CPUAccelerator) and not native_bf16()


def _logger(run_dir: Path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    try:
        import tensorboard  # noqa: F401

        return TensorBoardLogger(save_dir=str(run_dir), name="logs", version="", default_hp_metric=False)
    except ImportError:
        return CSVLogger(save_dir=str(run_dir), name="logs", version="")


def train(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, Any]:
    """Run one training job described by ``cfg``, writing everything under ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    quiet_known_noise()
    if cfg.loss.get("balance", "none") != "none" and cfg.loss.get("balance_size") is None:
        cfg.loss.balance_size = cfg.data.image_size  # recorded as used, so that a later run can reuse the references
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    base = read_model(cfg.base_model) if cfg.get("base_model") else None
    data_cfg = cfg.data
    if base is not None:
        data_cfg = OmegaConf.merge(cfg.data, {"styles": _new_style_entries(cfg, base.styles), "style_dir": None})
    data: StyleTransferDataModule = instantiate(data_cfg)
    identity = cfg.identity_row or (base is not None and IDENTITY in list(cfg.new_styles))
    old_styles = base.styles if base is not None else []
    names = [*old_styles, *data.style_names, *([IDENTITY] if identity and IDENTITY not in old_styles else [])]
    if not names:
        raise TrainingConfigError("nothing to train: data.styles is empty; give paintings (data.styles or data.style_dir) or identity_row=true")
    model = instantiate(cfg.model, _convert_="all")  # the module's own settings; the run's facts follow
    module: StyleTransferModule = model(
        style_names=names,
        **({"width": base.transformer.config.width, "num_residual_blocks": base.transformer.config.num_residual_blocks} if base is not None else {}),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        style_multipliers=dict(zip(data.style_names, data.style_multipliers)),
        lr=cfg.optim.lr,
        style_lr=cfg.optim.style_lr,
        lr_decay_steps=cfg.optim.decay_steps,
        final_lr_fraction=cfg.optim.final_fraction,
        frozen_styles=len(old_styles),
        seed=cfg.seed,
    )
    if base is not None:
        module.transformer.load_state_dict(base.transformer.with_new_styles(len(names) - len(old_styles)).state_dict())
        _say(f"base model {cfg.base_model}: {len(old_styles)} style(s) and every convolution frozen")
    init = None
    if base is None and cfg.get("init_model"):
        if cfg.get("ckpt_path"):
            raise TrainingConfigError("give init_model (start from a model file's weights) or ckpt_path (resume a run), not both")
        init = read_model(cfg.init_model)
        copied = init_from(module.transformer, init.transformer, init.styles, names, seed=cfg.seed)
        widened = init.transformer.config.width != module.transformer.config.width
        how = f" widened from width {init.transformer.config.width} to {module.transformer.config.width} (the same function)" if widened else ""
        _say(f"initial weights from {cfg.init_model}: every convolution{how}, and the rows of {copied} of {len(names)} style(s)")
    _say(f"VGG-16 weights: {module.loss.vgg.weights_source}")
    trained = [names[i] for i in module.trainable_styles]
    _say(f"training {len(trained)} style(s): {', '.join(trained)}")
    module.set_style_targets(dict(zip(data.style_names, data.load_style_images())))
    reference = balance_reference(cfg, data, module, run_dir, init.training if init is not None else None)
    if reference is not None:
        module.set_balance(reference)

    callbacks = build_callbacks(cfg, run_dir, data, base_style_files=base.training.get("style_files") if base else None)
    checkpoint = next((c for c in callbacks if isinstance(c, LastStepCheckpoint)), None)
    throughput = next((c for c in callbacks if isinstance(c, Throughput)), Throughput())
    stopper = next((c for c in callbacks if isinstance(c, StopOnSignal)), None)
    trainer_cfg = cfg.trainer
    if str(trainer_cfg.get("precision")) == "auto":
        precision = auto_precision(str(trainer_cfg.get("accelerator", "auto")))
        trainer_cfg = OmegaConf.merge(trainer_cfg, {"precision": precision})
        _say(f"trainer.precision=auto: {precision} on this machine")
    trainer: L.Trainer = instantiate(
        trainer_cfg, default_root_dir=str(run_dir), logger=_logger(run_dir), callbacks=callbacks, plugins=[AtomicCheckpointIO()]
    )

    if _slow_cpu_bf16(trainer):
        _say(
            f"warning: trainer.precision={trainer.precision_plugin.precision} on a CPU without AVX-512 BF16 or AMX runs several times "
            "slower than float32 (16 times on the project's AMD EPYC); use trainer.precision=32-true"
        )
    start = time.perf_counter()
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and ckpt_path != "last" and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path {ckpt_path} does not exist")
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    elapsed = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    last = Path(checkpoint.last_model_path) if checkpoint is not None and checkpoint.last_model_path else None
    summary = {
        "run_dir": str(run_dir),
        "steps": trainer.global_step,
        "seconds": round(elapsed, 1),
        "last_checkpoint": str(last) if last else None,
        "metrics": metrics,
        "images_per_second": throughput.images_per_second,
    }
    speed = f" ({throughput.images_per_second:.1f} images/s after warm-up)" if throughput.images_per_second else ""
    stopped = f" (stopped by {stopper.received})" if stopper is not None and stopper.received else ""
    _say(f"finished {trainer.global_step} steps{stopped} in {elapsed:.1f} s{speed}; last checkpoint: {summary['last_checkpoint']}")
    summary["model"] = None
    if last is not None and last.is_file() and trainer.is_global_zero:
        model = export_run_model(last, run_dir / "model.safetensors", manifest=Path(str(cfg.data_root)) / "MANIFEST.csv")
        summary["model"] = str(model)
        style = next((n for n in names if n != IDENTITY), names[0])
        twin = model.with_suffix(".onnx")  # beside the model file, the fastest CPU engine (docs/onnx.md)
        _say(f"model file: {model}\n  cin-style styles {model}\n  cin-style stylize -m {model} photo.jpg -s {style} -o out.jpg\n  cin-style export {model} -o {twin}   # optional: runs without PyTorch, and --engine onnx")
    return summary


def main(argv: list[str]) -> int:
    """``cin-style train ARGS``: Hydra composes the config from ``cin_style.conf`` and the
    overrides in ``argv`` (``-m`` sweeps too) and :func:`train` runs it in Hydra's run folder."""
    import sys

    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import InstantiationException

    from cin_style.io.modelfile import ModelFileError
    from cin_style.losses.vgg import VGGWeightsError

    @hydra.main(config_path="pkg://cin_style.conf", config_name="train", version_base="1.3")
    def run(cfg: DictConfig) -> None:
        try:
            train(cfg, HydraConfig.get().runtime.output_dir)
        except (FloatingPointError, VGGWeightsError, InstantiationException, FileNotFoundError, ModelFileError, TrainingConfigError) as err:
            # Problems the user can act on: one line, not Hydra's traceback. SystemExit passes through Hydra.
            print(f"cin-style train: error: {err}", file=sys.stderr)
            sys.exit(2)

    # Hydra reads its overrides from sys.argv; argv[0] is also what Lightning's DDP launcher
    # re-runs to start the other processes (see _train_main.py).
    sys.argv = [str(Path(__file__).with_name("_train_main.py")), *argv]
    run()
    return 0
