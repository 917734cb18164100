"""The Python API for trained networks: ``StyleModel.load(path).stylize(image, style=...)``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cin_style.io.images import DEFAULT_MAX_PIXELS, fit_longer_side, limit_longer_side, load_image, to_pil, to_tensor
from cin_style.network.transformer import StyleTransformer
from cin_style.io.modelfile import ModelFileError, read_model, write_model
from cin_style.io.sheets import contact_sheet, interpolation_weights
from cin_style.inference.engines import ENGINES, CompiledEngine, Engine, choose_engine
from cin_style.inference.stylizer import Stylizer
from cin_style.inference.color import preserve_color as _preserve_color
from cin_style.network import fastconv
from cin_style.network.devices import default_device
from cin_style.inference.memory import keep_freed_memory
from cin_style.inference.masks import MaskSource, check_mask_styles, mask_weights, stylize_regions
from cin_style.network.styles import IDENTITY, StyleError, StyleSpec, check_strength, with_strength
from cin_style.network.tiling import MIN_TILE, stylize_tiled, tile_passes
from cin_style.network.transformer import resize_style_map
from cin_style.inference.strokes import DEFAULT_STROKE, NATIVE, guided_upsample

if TYPE_CHECKING:
    from cin_style.losses.perceptual import PerceptualLoss

__all__ = ["StyleModel", "OutOfMemory", "default_device", "ENGINES", "DEFAULT_TILE", "PRETRAINED_ENV", "pretrained_path", "pretrained_file", "demo_photo_path"]

#: Environment variable naming a model file to use instead of the bundled one.
PRETRAINED_ENV = "CIN_STYLE_PRETRAINED"


def pretrained_path() -> Path:
    """The default model: ``$CIN_STYLE_PRETRAINED`` if set, else the one bundled with the package."""
    override = os.environ.get(PRETRAINED_ENV)
    if override:
        return Path(override)
    from importlib.resources import files

    return Path(str(files("cin_style") / "models" / "paintings.safetensors"))


def pretrained_file() -> Path:
    """:func:`pretrained_path`, which must exist: a one-line error says what to do instead."""
    path = pretrained_path()
    if not path.is_file():
        raise ModelFileError(
            f"no pretrained model at {path}: this build of cin-style ships without one (see docs/pretrained.md); "
            f"give a model with -m/--model, or set {PRETRAINED_ENV} to a model file"
        )
    return path


def demo_photo_path() -> Path:
    """The bundled demo photo (scikit-image's CC0 "coffee"; see cin_style/assets/README.md)."""
    from importlib.resources import files

    return Path(str(files("cin_style") / "assets" / "demo.jpg"))

#: Tile side (input pixels) for tiled stylization: a 3840x2160 image then peaks near 0.9 GB
#: of tensors on CPU, and smaller tiles do not make it faster.
DEFAULT_TILE = 256

#: Above this many pixels per pass the CPU works in pieces by default: the whole-image forward
#: pass needs about 0.9 GB per megapixel there. A batch of smaller images goes through in
#: groups of at most this many pixels; a single larger image in exact tiles.
CPU_WHOLE_PIXEL_LIMIT = 2_000_000


class OutOfMemory(RuntimeError):
    """Stylization ran out of memory even where it could fall back to tiles; the message says what to try."""


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _user_cache(kind: str, key: str, tensors: dict[str, Tensor] | None = None) -> dict[str, Tensor] | None:
    """The user cache of tensors (``<cache>/KIND/KEY.safetensors``: fitted style rows, models'
    signatures): with ``tensors``, store them (atomically); without, the stored ones or None."""
    from safetensors.torch import load_file, save_file

    from cin_style.io.files import atomic_path
    from cin_style.losses.vgg import project_cache_dir

    path = project_cache_dir() / kind / f"{key}.safetensors"
    if tensors is None:
        try:
            return load_file(path) if path.is_file() else None
        except Exception:  # a damaged cache entry is computed again, not an error
            return None
    try:
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    except OSError:  # a read-only or full cache costs the next call time, nothing else
        pass
    return tensors


class StyleModel(Stylizer):
    """A trained N-style network with its style names, ready to stylize.

    ``stylize`` takes a path, a PIL image, a numpy array (H, W, 3), a tensor (3, H, W) or
    (B, 3, H, W) in [0, 1], or a list of these, and returns the same kind: a path or PIL image
    gives a PIL image, an array an array of the input's dtype, a tensor a tensor.

    Built from a network directly, it runs float32 PyTorch (``engine="nnpack"``: NNPACK's
    convolutions where they apply, within rounding of training's); :meth:`load` and
    :meth:`pretrained` pick the fastest engine for the device (``engine="auto"``).
    """

    def __init__(
        self,
        transformer: StyleTransformer,
        styles: Sequence[str],
        *,
        training: dict[str, Any] | None = None,
        credits: list[dict[str, Any]] | None = None,
        device: str | torch.device | None = None,
        engine: str = "nnpack",
        source: str | os.PathLike | None = None,
    ) -> None:
        if len(styles) != transformer.num_styles:
            raise ValueError(f"{len(styles)} style names for a network with {transformer.num_styles} styles")
        super().__init__(styles, training=training, credits=credits)
        self.device = torch.device(device) if device is not None else default_device()
        self.transformer = transformer.to(self.device).eval()
        self.min_size = transformer.min_size
        if self.device.type == "cpu":
            keep_freed_memory()  # large layers reuse freed pages instead of faulting in new ones (cin_style.inference.memory)
        #: The file the model was read from, where it was (the ``onnx`` engine finds its graph beside it).
        self.source = None if source is None else str(source)
        #: What runs whole images (:mod:`cin_style.inference.engines`; :meth:`load` says how it is chosen).
        self.engine: Engine = choose_engine(engine, self.transformer, styles=self.styles, device=self.device, source=source)
        self._loss = None  # the training loss with VGG-16, loaded on the first refinement (:meth:`_refiner`)
        self._signature: tuple[int, Tensor, dict[str, Tensor]] | None = None  # every row's output Grams (:meth:`nearest_blend`)
        self._refine_targets: dict[tuple[str, str], dict[str, Tensor]] = {}  # (style, folder) -> the painting's Gram matrices

    can_refine = True

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device | None = None, engine: str = "auto") -> StyleModel:
        """Load a ``.safetensors`` model file (or a Lightning ``.ckpt``, read with weights_only).

        ``engine`` (what runs whole images; :func:`cin_style.inference.engines.choose_engine`,
        ``benchmarks/RESULTS.md`` has the measurements): ``"auto"`` picks the fastest path measured
        for the device. Where the CPU multiplies bfloat16 natively (AMX or AVX-512 BF16) that is
        bfloat16 autocast (about 58 dB PSNR against float32 at 512 px); elsewhere float32 PyTorch
        with NNPACK's Winograd and FFT convolutions (:mod:`cin_style.network.fastconv`), or, on a
        PyTorch without NNPACK, the ONNX graph exported from the same weights beside the model
        file when it is there (``cin-style export MODEL -o MODEL.onnx``; the bundled model ships
        with one). ``"onnx"`` requires that graph; ``"torch"`` runs PyTorch's direct float32
        convolutions only, the exact reference; ``"nnpack"``, ``"bf16"`` and ``"compiled"`` force
        those paths. Regions, exact tiles and refining always run the PyTorch network.
        """
        loaded = read_model(path)
        return cls(loaded.transformer, loaded.styles, training=loaded.training, credits=loaded.credits, device=device, engine=engine, source=path)

    @classmethod
    def pretrained(cls, *, device: str | torch.device | None = None, engine: str = "auto") -> StyleModel:
        """The bundled "paintings" network (or the model file named by ``$CIN_STYLE_PRETRAINED``)."""
        return cls.load(pretrained_file(), device=device, engine=engine)

    def save(self, path: str | os.PathLike, *, half: bool = False) -> Path:
        return write_model(path, self.transformer, self.styles, training=self.training, credits=self.credits, half=half)

    def __repr__(self) -> str:
        return f"StyleModel({len(self.styles)} styles: {', '.join(self.styles[:5])}{', ...' if len(self.styles) > 5 else ''}; device={self.device})"

    def accelerate(self, *, dtype: torch.dtype | None = torch.bfloat16, channels_last: bool = True, compile: bool = True, mode: str | None = None) -> StyleModel:
        """Stylize whole images through a compiled bfloat16 channels-last copy of the network
        (:class:`~cin_style.network.fast.CompiledTransformer`); for GPUs and long runs of same-sized images.

        The first image of each size compiles (tens of seconds); every later one, with any style
        or blend, reuses that graph. Tiled work, per-pixel masks and out-of-memory fall-backs keep
        the plain float32 network. Returns ``self``.
        """
        self.engine = CompiledEngine(self.transformer, dtype=dtype, channels_last=channels_last, compile=compile, mode=mode)
        return self

    def weights(self, style: StyleSpec, *, strength: float = 1.0) -> Tensor:
        """:meth:`~cin_style.inference.stylizer.Stylizer.blend` as a float32 tensor (N,), the form the network takes.

        ``strength`` in [0, 1] blends the style's gamma/beta with the identity row's: 0 gives
        the identity row (the photo, as well as the network reproduces it), 1 the full style.
        """
        return torch.tensor(self.blend(style, strength=strength), dtype=torch.float32)

    @torch.inference_mode()
    def stylize_tensor(
        self, batch: Tensor, weights: Tensor, *, stroke: float | str = DEFAULT_STROKE, tile: int | None = None, progress: bool = False
    ) -> Tensor:
        """Stylize a batch (B, 3, H, W) in [0, 1] with weights (N,) or (B, N), or per-pixel maps
        (N, h, w) or (B, N, h, w) of any size (regions, with each region's own statistics: :mod:`cin_style.inference.masks`).

        ``stroke``: the size of the strokes relative to the picture (:mod:`cin_style.inference.strokes`): the
        network paints at the working size :func:`~cin_style.inference.strokes.working_size` gives (a shorter
        side of 256 px / ``stroke`` for the bundled model, never above the batch's own size) and
        the result is brought to full size by guided upsampling; ``"native"`` runs the network over
        every pixel at full size. ``tile``: ``None`` decides by itself (whole images, except large
        ones on CPU, and a fall-back to tiles when the device runs out of memory); ``0`` never tiles;
        a number always tiles with that tile side. Tiled results equal whole ones up to rounding
        (see :mod:`cin_style.network.tiling`). ``progress`` shows a progress bar for tiled work.
        Per-pixel maps always run whole.
        """
        return self.paint_at_stroke(batch, weights, lambda x, w: self._stylize_tensor(x, w, tile=tile, progress=progress), stroke=stroke)

    @torch.inference_mode()
    def paint_at_stroke(self, batch: Tensor, weights: Tensor, paint: Callable[[Tensor, Tensor], Tensor], *, stroke: float | str = DEFAULT_STROKE) -> Tensor:
        """``paint(images, weights)`` (a network pass at the size it is given) at the working size of
        ``stroke``, brought back to the size of ``batch`` by :func:`~cin_style.inference.strokes.guided_upsample`;
        where the working size is the batch's own, ``paint`` on the batch itself. Weights as for
        :meth:`stylize_tensor`; per-pixel maps are resized to the working size."""
        with fastconv.direct(self.engine.direct):
            h, w = batch.shape[-2:]
            size = self.working_size(h, w, stroke)
            weights = weights.to(self.device)
            if size == (h, w):
                return paint(batch.to(self.device, torch.float32), weights)
            batch = batch.to(self.device, torch.float32)
            small = torch.nn.functional.interpolate(batch, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
            if weights.dim() in (3, 4):  # per-pixel maps, (N, H, W) or (B, N, H, W)
                maps = resize_style_map(weights[None] if weights.dim() == 3 else weights, len(self.styles), size)
                weights = maps[0] if weights.dim() == 3 else maps
            painted = paint(small, weights)
            return guided_upsample(painted, small, batch, prior=self._identity_share(weights))

    def training_loss(self) -> PerceptualLoss:
        """The perceptual loss the model was trained with (its record's settings, VGG-16 loaded on
        first use and kept): what refining and fitting a new style minimize."""
        if self._loss is None:
            from cin_style.losses.perceptual import LossConfig, PerceptualLoss

            self._loss = PerceptualLoss(num_styles=1, config=LossConfig.from_record(self.training)).to(self.device).eval()
        return self._loss

    def nearest_blend(self, painting: str | os.PathLike | Image.Image) -> dict[str, float]:
        """The blend of this model's styles that paints nearest ``painting`` (in the Gram space of
        the training loss, on two of the bundled photos): an instant preview of a painting the
        model does not know, in a second or two (:func:`cin_style.inference.new_style.nearest_blend`)."""
        weights, _ = self._nearest(self._painting_grams(painting))
        return {self.styles[i]: round(float(w), 4) for i, w in enumerate(weights) if w > 0}

    def _painting_grams(self, painting: str | os.PathLike | Image.Image) -> dict[str, Tensor]:
        from cin_style.inference.new_style import painting_tensor
        from cin_style.io.paintings import recorded_style_size

        target = painting_tensor(painting, recorded_style_size(self.training))
        return self.training_loss().style_grams(target[None].to(self.device))

    def prepare_preview(self) -> None:
        """Make the first :meth:`nearest_blend` as quick as the next ones (the app calls this
        before it serves): one preview of a bundled photo loads VGG-16 and the model's signature
        and pays the first passes' one-off set-up, most of a first preview's time on a CPU."""
        from cin_style.inference.new_style import bundled_photos

        self.nearest_blend(bundled_photos()[0])

    def _nearest(self, grams: dict[str, Tensor]) -> tuple[Tensor, float]:
        from cin_style.inference.new_style import nearest_blend

        photos, rows = self._preview_signature()
        with fastconv.direct(self.engine.direct):
            return nearest_blend(self.transformer, self.styles, grams, self.training_loss(), photos, rows=rows)

    def _preview_signature(self) -> tuple[Tensor, dict[str, Tensor]]:
        from cin_style.inference.new_style import SIGNATURE_CROPS, bundled_photos, fitting_crops, row_grams

        with fastconv.direct(self.engine.direct):
            if self._signature is None or self._signature[0] != len(self.styles):
                # Two fixed crops of the bundled photos, and what every row paints of them: computed
                # once per model and kept in the user cache (keyed by the weights, the loss and the
                # crops), so that a freshly loaded model previews without painting every row again.
                photos = fitting_crops(bundled_photos()[:2], SIGNATURE_CROPS, generator=torch.Generator().manual_seed(0), count=2).to(self.device)
                key = self._signature_key(photos)
                rows = _user_cache("signatures", key)
                if rows is None:
                    rows = _user_cache("signatures", key, row_grams(self.transformer, self.styles, self.training_loss(), photos))
                self._signature = (len(self.styles), photos, {k: v.to(self.device) for k, v in rows.items()})
        return self._signature[1], self._signature[2]

    def _signature_key(self, photos: Tensor) -> str:
        import hashlib
        import json

        from cin_style.io.export import weights_digest
        from cin_style.losses.perceptual import LossConfig

        digest = hashlib.sha256(weights_digest(self.transformer).encode())
        digest.update(json.dumps(LossConfig.from_record(self.training).scoring_record(), sort_keys=True).encode())
        digest.update(photos.detach().cpu().float().numpy().tobytes())
        return digest.hexdigest()[:32]

    def add_style(
        self,
        painting: str | os.PathLike | Image.Image,
        *,
        name: str | None = None,
        title: str | None = None,
        artist: str | None = None,
        photos: str | os.PathLike | Sequence[str | os.PathLike | Image.Image] | None = None,
        replace: bool = False,
        settings: Any = None,
        cache: bool = True,
        progress: bool = True,
    ) -> str:
        """Add ``painting`` as a new style, in place, and return its name (by default the file's
        name, lower-cased, with ``_`` for spaces and dashes).

        Only a new gamma/beta row is fitted, with the model's own training loss (Dumoulin et al.
        2017, §3.4; :mod:`cin_style.inference.new_style`): every old row and every convolution stays
        bit-identical, and the new style blends with the others like any row. It starts from the
        nearest blend of the existing styles (:meth:`nearest_blend`) and fits on ``photos`` (images,
        or a folder of them; default: the photos bundled with the package) with ``settings`` (a
        :class:`~cin_style.inference.new_style.FitSettings`; the defaults take one to two minutes on a
        2-core CPU). With ``cache`` the fitted row is kept in the user cache, keyed by the
        painting's pixels, the model's weights and the settings, so the same painting is instant
        the next time. ``replace`` refits a style of that name instead of refusing it. ``title``
        and ``artist`` go into the style's credit (:meth:`save` writes them).
        """
        import hashlib

        from tqdm.auto import tqdm

        from cin_style.inference.new_style import FitSettings, bundled_photos, fit_row, fitting_crops
        from cin_style.io.export import weights_digest

        settings = settings if settings is not None else FitSettings()
        if isinstance(photos, (str, os.PathLike)):  # a folder of photos
            from cin_style.io.images import find_images

            folder, photos = photos, find_images(photos)
            if not photos:
                raise ValueError(f"{folder}: no photos to fit the style on")
        source = None if isinstance(painting, Image.Image) else Path(painting)
        if name is None:
            if source is None:
                raise ValueError("give the new style a name (name=...) when the painting is an image, not a file")
            name = "_".join(source.stem.lower().replace("-", " ").split())
        name = str(name).strip()
        if not name or name == IDENTITY or any(c in name for c in "=,"):
            raise StyleError(f"{name!r} cannot name a style: give a name without '=' or ',' that is not {IDENTITY!r}")
        if name in self.styles and not replace:
            raise StyleError(f"the model already has a style {name!r}: give another name (--name) or replace it (--replace)")
        grams = self._painting_grams(painting)  # refuses a broken or tiny painting before any work
        key = None
        if cache:
            digest = hashlib.sha256()
            for g in grams.values():
                digest.update(g.detach().cpu().numpy().tobytes())
            for p in photos or []:
                digest.update(str(p).encode() if not isinstance(p, Image.Image) else p.tobytes())
            digest.update(weights_digest(self.transformer).encode() + settings.digest().encode() + str(settings.bf16(self.device)).encode())
            key = digest.hexdigest()[:32]
            row = _user_cache("styles", key)
        if key is None or row is None:
            start, _ = self._nearest(grams)
            generator = torch.Generator().manual_seed(settings.seed)
            crops = fitting_crops(list(photos) if photos else bundled_photos(), settings, generator=generator)
            with tqdm(total=settings.steps, unit="step", desc=f"add style {name}", disable=not progress) as bar:
                with torch.inference_mode(False), torch.enable_grad(), fastconv.direct(True):
                    row, history = fit_row(
                        self.transformer, start, grams, self.training_loss(), crops, settings, generator=generator,
                        progress=lambda step, loss: bar.update(1) or bar.set_postfix(loss=f"{loss:.3g}"),
                    )  # fmt: skip
            if key is not None:
                _user_cache("styles", key, row)
        self._put_row(name, row)
        fit = settings.record() | {"precision": "bf16-mixed" if settings.bf16(self.device) else "32-true"}  # what "auto" was here
        record = {"painting": source.name if source is not None else None, "fit": fit}
        self.training.setdefault("added_styles", {})[name] = record
        if source is not None:
            self.training.setdefault("style_files", {})[name] = source.name
        credit = {"style": name, "title": title or (source.name if source is not None else name), "artist": artist or ""}
        # One credit per style, in table order (a model without credits gets bare entries for the others).
        known = {c.get("style"): c for c in self.credits or []}
        self.credits = [credit if s == name else known.get(s, {"style": s}) for s in self.styles]
        return name

    def _put_row(self, name: str, row: dict[str, Tensor]) -> None:
        """Write a fitted row into the network: over the style ``name`` if it exists, else as a new last style."""
        transformer = self.transformer
        if name not in self.styles:
            transformer = transformer.with_new_styles(1).to(self.device)
            self.styles.append(name)
        index = self.styles.index(name)
        tables = transformer.style_tables()
        with torch.no_grad():
            for key, value in row.items():
                tables[key][index] = value.to(tables[key])
        self.transformer = transformer.eval()
        # The same engine, with its settings, on the new network; an ONNX graph holds the old rows,
        # so its place goes to what "auto" picks without a graph.
        self.engine = self.engine.on(self.transformer) or choose_engine("auto", self.transformer, styles=self.styles, device=self.device)
        self._signature = None

    def _refiner(self, style: StyleSpec, steps: int, style_images: str | os.PathLike, *, progress: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
        """``refine(painted, photo)``: ``steps`` L-BFGS steps of the optimization method from the
        network's ``painted`` images towards the painting of ``style`` (one style) with the model's
        training loss, ``photo`` the content (both at the size painted)."""
        from tqdm.auto import tqdm

        from cin_style.io.paintings import find_paintings, load_style_image, recorded_style_size
        from cin_style.losses.optimize import optimize_images

        name = self.styles[int(torch.argmax(self.weights(style)))]
        loss = self.training_loss()
        key = (name, str(style_images))
        if key not in self._refine_targets:  # a folder of photos reads and measures the painting once
            painting = find_paintings(style_images, [name], self.training.get("style_files"))[name]
            self._refine_targets[key] = loss.style_grams(load_style_image(painting, recorded_style_size(self.training))[None].to(self.device))
        grams = self._refine_targets[key]

        def refine(painted: Tensor, photo: Tensor) -> Tensor:
            # The network ran under inference mode; the optimization needs gradients, and tensors made
            # outside inference mode (the clones) to take them.
            with torch.inference_mode(False), torch.enable_grad(), tqdm(total=steps, unit="step", desc="refine", disable=not progress, leave=False) as bar:
                result = optimize_images(photo.clone(), loss=loss, style_grams=grams, steps=steps, init=painted.clone(), progress=lambda step, losses: bar.update(1))
            return result.images

        return refine

    def _identity_share(self, weights: Tensor) -> float | Tensor:
        """The identity row's share of a blend: a number, or per image (B, 1, 1, 1), or a per-pixel map (B, 1, h, w)."""
        if not self.has_identity:
            return 0.0
        i = self.styles.index(IDENTITY)
        if weights.dim() == 1:
            return float(weights[i])
        if weights.dim() == 2:
            return weights[:, i].float().view(-1, 1, 1, 1)
        maps = weights[None] if weights.dim() == 3 else weights
        return maps[:, i : i + 1].float()

    def _stylize_tensor(self, batch: Tensor, weights: Tensor, *, tile: int | None, progress: bool) -> Tensor:
        if tile is not None and tile != 0 and tile < MIN_TILE:
            raise ValueError(f"tile must be 0 (off) or at least {MIN_TILE} pixels, got {tile}")
        batch = batch.to(self.device, torch.float32)
        w = weights.to(self.device)
        w = w.unsqueeze(0).expand(batch.shape[0], *w.shape) if w.dim() in (1, 3) else w
        if w.dim() == 4:
            return stylize_regions(self.transformer, batch, w)
        per_image = batch.shape[-2] * batch.shape[-1]
        if tile is None and self.device.type == "cpu" and batch.shape[0] * per_image > CPU_WHOLE_PIXEL_LIMIT:
            if per_image > CPU_WHOLE_PIXEL_LIMIT:
                tile = DEFAULT_TILE
            else:  # whole images, a few at a time: bounded memory without the tiles' recomputation
                group = CPU_WHOLE_PIXEL_LIMIT // per_image
                return torch.cat([self.stylize_tensor(batch[i : i + group], w[i : i + group], stroke=NATIVE, tile=0) for i in range(0, batch.shape[0], group)])
        if tile:
            return self._tiled(batch, w, tile, progress)
        try:
            return self.engine(batch, w)
        except Exception as err:  # noqa: BLE001 - only out-of-memory errors are handled, the rest re-raised
            if not _is_out_of_memory(err):
                raise
            del err
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        size = f"{batch.shape[-1]}x{batch.shape[-2]}"
        if tile == 0:
            raise OutOfMemory(f"out of memory stylizing {size} on {self.device}; allow tiling (--tile auto or --tile {DEFAULT_TILE}) or shrink the image with --size")
        warnings.warn(f"out of memory stylizing {size} on {self.device} in one piece; retrying in {DEFAULT_TILE}-pixel tiles (same result, less memory)", stacklevel=2)
        return self._tiled(batch, w, DEFAULT_TILE, progress)

    def _tiled(self, batch: Tensor, w: Tensor, tile: int, progress: bool) -> Tensor:
        from tqdm.auto import tqdm

        total = tile_passes(self.transformer, batch.shape[-2], batch.shape[-1], tile=tile)
        with tqdm(total=total, unit="tile", desc="tiles", disable=not progress, leave=False) as bar:
            try:
                return stylize_tiled(self.transformer, batch, w, tile=tile, progress=bar.update)
            except Exception as err:  # noqa: BLE001
                if not _is_out_of_memory(err):
                    raise
        raise OutOfMemory(f"out of memory stylizing {batch.shape[-1]}x{batch.shape[-2]} on {self.device} even in {tile}-pixel tiles; try a smaller --tile or --size")

    def check_style(self, style: StyleSpec | None = None, *, strength: float = 1.0, masks: Mapping[str | int, MaskSource] | None = None) -> None:
        """Raise :class:`StyleError` for a selection :meth:`stylize` would refuse (unknown names, bad
        weights, masks for unknown styles, a strength without an identity row), before any image is read."""
        if masks is None:
            return super().check_style(style, strength=strength)
        check_mask_styles(masks, self.styles, base=style)
        if strength != 1.0:
            check_strength(strength, self.styles)

    def stylize(
        self,
        images: Any,
        style: StyleSpec | None = None,
        *,
        strength: float = 1.0,
        masks: Mapping[str | int, MaskSource] | None = None,
        feather: float = 0.0,
        preserve_color: bool = False,
        stroke: float | str = DEFAULT_STROKE,
        refine: int = 0,
        style_images: str | os.PathLike | None = None,
        size: int | None = None,
        tile: int | None = None,
        progress: bool = False,
    ) -> Any:
        """Stylize one image or a list of images with a style or a blend of styles.

        * ``stroke`` sets the strokes' size relative to the picture, the same at any resolution
          (:mod:`cin_style.inference.strokes`): 1 (default) the look of the network's training scale (the
          preview's), 0.5 finer, 2 larger strokes; ``"native"`` runs the network over every pixel
          of the full-size photo (strokes of a fixed size in pixels, so finer on larger photos).
        * ``refine`` runs that many L-BFGS steps of the optimization method of Gatys et al.
          (:mod:`cin_style.losses.optimize`, the model's own training loss) from the network's painting,
          at the working size, before it is brought to full size: the optimization's quality in
          a fraction of its time. It needs one style and ``style_images``, the folder of the
          paintings the model was trained on (found by the file names the model records).

        * ``strength`` (0 to 1) dials the style down towards the photo (needs an identity row).
        * ``masks`` maps styles to grayscale masks (paths, PIL images, arrays or tensors, resized
          to each image): each region gets its style in the same pass; ``style`` then fills
          what the masks leave uncovered, and ``feather`` (pixels) softens the edges.
        * ``preserve_color`` keeps the photo's colours (luminance-only transfer).
        * ``size`` limits the longer side (the image is shrunk first; the output has the
          shrunk size). ``tile`` and ``progress`` are as for :meth:`stylize_tensor`.
        """
        self.check_style(style, strength=strength, masks=masks)  # before any image is read
        stroke = self.check_stroke(stroke)
        refine = self.check_refine(refine, style, style_images=style_images, strength=strength, masks=masks)
        if isinstance(images, list):
            options = {"strength": strength, "masks": masks, "feather": feather, "preserve_color": preserve_color, "stroke": stroke, "size": size, "tile": tile, "progress": progress}
            return [self.stylize(image, style, refine=refine, style_images=style_images, **options) for image in images]
        refiner = self._refiner(style, refine, style_images, progress=progress) if refine else None
        batch, restore = _as_batch(images, size)
        if masks is None:
            weights = self.weights(style, strength=strength)
        else:
            # The masks at the size the network paints at (a full-size map of every style would take
            # gigabytes at 12 megapixels); the feather, given in the photo's pixels, scales with them.
            height = batch.shape[-2]
            size_painted = self.working_size(height, batch.shape[-1], stroke)
            weights = mask_weights(masks, self.styles, size_painted, base=style, feather=feather * size_painted[0] / height)
            weights = weights if strength == 1.0 else with_strength(weights, strength, self.styles)

        def paint(x: Tensor, w: Tensor) -> Tensor:
            painted = self._stylize_tensor(x, w, tile=tile, progress=progress)
            return painted if refiner is None else refiner(painted, x)

        out = self.paint_at_stroke(batch, weights, paint, stroke=stroke)
        return restore(_preserve_color(out, batch.to(out.device)) if preserve_color else out)

    def stylize_files(
        self, pairs: Sequence[tuple[Path, Path]], style: StyleSpec | None = None, *, devices: int = 1, **options: Any
    ) -> list[str] | None:
        """:meth:`Stylizer.stylize_files`; with ``devices`` > 1 the pairs are shared out between that
        many devices of the model's kind through Lightning's predict loop
        (:func:`cin_style.inference.predict.stylize_files`, which starts the other processes by re-running
        the command line: call it from a script); only the first process returns the failures of
        all, the others return None.
        """
        if devices == 1:
            return super().stylize_files(pairs, style, **options)
        from cin_style.inference.predict import stylize_files

        self.check_request(style, devices=devices, **options)  # before any process starts
        options.pop("sheet", None)
        files = {k: options.pop(k) for k in ("quality", "max_pixels") if k in options}
        writer = stylize_files(self, pairs, style=style, options=options, devices=devices, **files)
        return writer.failure_lines if writer.is_global_zero else None

    def blend_grid(
        self, image: str | os.PathLike | Image.Image, styles: Sequence[str | int], *, steps: int = 5, size: int | None = None,
        stroke: float | str = DEFAULT_STROKE, max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> Image.Image:
        """Interpolate between 2, 3 or 4 styles (a strip, a triangle or the CIN paper's 2-D grid).

        The styles, ``steps`` and ``stroke`` (as for :meth:`stylize`) are checked before the photo
        is read (``max_pixels``: as :func:`load_image`).
        """
        stroke = self.check_stroke(stroke)
        indices = [int(torch.argmax(self.weights(s))) for s in styles]
        if len(set(indices)) != len(indices):
            raise ValueError("give each style once")
        interpolation_weights(len(indices), steps)  # checks the style count and steps
        x = to_tensor(self._photo(image, size, max_pixels=max_pixels))[None]
        rows = []
        for row in interpolation_weights(len(indices), steps):
            cells = []
            for cell in row:
                if cell is None:
                    cells.append(None)
                    continue
                w = torch.zeros(len(self.styles))
                for i, value in zip(indices, cell):
                    w[i] = value
                cells.append(to_pil(self.stylize_tensor(x, w, stroke=stroke)[0]))
            rows.append(cells)
        return contact_sheet(rows)


def _as_batch(image: Any, size: int | None) -> tuple[Tensor, Callable[[Tensor], Any]]:
    """Any supported image as a float32 batch (B, 3, H, W) in [0, 1], shrunk to ``size``, and the
    function that turns an output batch back into the input's kind (PIL image, array of the
    input's dtype, tensor of its shape, device and floating dtype)."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        photo = limit_longer_side(image.convert("RGB"), size)
        return to_tensor(photo)[None], lambda out: to_pil(out[0])
    if isinstance(image, np.ndarray):
        array = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"a numpy image must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
        array = array[..., :3]
        if array.dtype == np.uint8:  # 8-bit pixels are resized like a photo file
            batch, _ = _as_batch(Image.fromarray(array, "RGB"), size)
            return batch, lambda out: np.asarray(to_pil(out[0]))
        batch, to_tensor_kind = _as_batch(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1), size)
        return batch, lambda out: to_tensor_kind(out).permute(1, 2, 0).cpu().numpy().astype(image.dtype)
    if isinstance(image, Tensor):
        if image.dim() not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(f"a tensor image must be (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
        batch = (image[None] if image.dim() == 3 else image).float()
        new = fit_longer_side(batch.shape[-2], batch.shape[-1], size)
        if new != tuple(batch.shape[-2:]):
            batch = torch.nn.functional.interpolate(batch, size=new, mode="bilinear", antialias=True, align_corners=False)
        dtype = image.dtype if image.is_floating_point() else torch.float32
        return batch, lambda out: (out[0] if image.dim() == 3 else out).to(image.device, dtype)
    raise TypeError(f"cannot stylize a {type(image).__name__}: give a path, PIL image, numpy array or tensor")
