"""Paint at any size: strokes that belong to the picture, not to the pixel count.

The network paints strokes of a fixed size in pixels, the size they had in its training photos
(shorter side ``image_size``, 256 px for the bundled model). Run over every pixel of a
12-megapixel photo, those strokes shrink to a fine noise and the result looks like a tinted
photo ("the stroke size doesn't scale with the image", a common complaint about feed-forward
style transfer). So by default the network paints the photo at a *working size*, the scale it
was trained at divided by the stroke factor (:func:`working_size`), and the result is brought
to full size by :func:`guided_upsample`, which takes the photo's own edges from the full-size
photo.

Guided upsampling follows the local linear model of the guided filter (He, Sun & Tang, ECCV
2010) as the fast guided filter evaluates it for upsampling (He & Sun, arXiv 1505.00996, 2015;
Wu et al., "Fast End-to-End Trainable Guided Filter", CVPR 2018): at the working size, in every
small window, the painted image ``p`` is fitted as ``A @ I + b`` of the photo ``I`` (a 3x3
colour matrix ``A`` per window, by ridge regression). The guided filter would keep only that
fit, and with it lose every stroke the photo does not explain. Here the residual, the strokes,
is kept as well::

    out = up(A) @ I_full + up(p - A @ I_low)

``up`` is a smooth upsampling (bilinear for the slowly varying ``A``, Lanczos-3 for the residual,
which carries the strokes). Shrunk back to the working size, ``out`` is the network's painting
again (``A`` is smooth, so ``down(up(A) @ I_full) = A @ I_low``); at full size it equals
``up(p) + up(A) @ (I_full - up(I_low))``: the painting scaled up plus the photo's fine detail,
passed through the same local colour map the network applied there. Where the network ignored
the photo (a flat painted sky) ``A`` is near 0 and no photo detail comes through; the ridge
term pulls ``A`` there towards ``A0 = s * identity``, where ``s`` is the identity row's share of
the blend, so that the strength dial's 0 gives the photo back exactly.

The same code runs on PyTorch tensors and on NumPy arrays (the ONNX runtime path, without
PyTorch), as :mod:`cin_style.inference.color` does, in strips of rows, so memory stays a few tens of
megabytes above the input and output images at any size.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

__all__ = ["NATIVE", "DEFAULT_STROKE", "REFERENCE_SIDE", "RADIUS", "EPS", "StrokeError", "parse_stroke", "check_stroke", "reference_side", "working_size", "guided_upsample"]

#: ``stroke=NATIVE`` runs the network over every pixel at full size (strokes of a fixed size in pixels).
NATIVE = "native"
DEFAULT_STROKE = 1.0
#: The shorter side (pixels) that stroke 1 paints at when a model file does not record its training photos' size.
REFERENCE_SIDE = 256
#: Window radius (working-size pixels) of the local linear fit, and its ridge weight. A 5x5 window
#: follows the photo's edges at the working size's own resolution; eps = 1e-3 (a contrast of
#: about 3 % of the range) keeps the fit from amplifying the photo's noise in flat regions.
RADIUS = 2
EPS = 1e-3
#: How the residual, which carries the strokes, is enlarged. Lanczos-3 keeps more of the strokes'
#: finest texture than bicubic: shrunk back, the output's style term is 5-20 % nearer the working
#: size's own (benchmarks/strokes.py).
RESIDUAL_KERNEL = "lanczos"
#: Output rows per strip: the full-size work holds about 20 maps of this many rows.
STRIP_ROWS = 128


class StrokeError(ValueError):
    """A stroke factor that cannot be used: not a positive number, or too large for the photo."""


def parse_stroke(value: Any) -> float | str:
    """A stroke factor as given by a user: a positive number (1 the default look, 0.5 finer
    strokes, 2 larger ones) or ``"native"``; :class:`StrokeError` otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == NATIVE:
            return NATIVE
        try:
            value = float(text)
        except ValueError:
            raise StrokeError(f"stroke must be a positive number (1 = the default look, 2 = larger strokes) or 'native', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StrokeError(f"stroke must be a positive number or 'native', got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise StrokeError(f"stroke must be a positive number (1 = the default look, 0.5 = finer, 2 = larger strokes) or 'native', got {value:g}")
    return value


def reference_side(training: Any) -> int:
    """The shorter side stroke 1 paints at: the training photos' ``image_size`` from a model's
    training record, else :data:`REFERENCE_SIDE`."""
    try:
        return int(training.get("image_size") or REFERENCE_SIDE)
    except (AttributeError, TypeError, ValueError):
        return REFERENCE_SIDE


def check_stroke(stroke: Any, *, reference: int = REFERENCE_SIDE, min_size: int = 8) -> float | str:
    """:func:`parse_stroke`, and a :class:`StrokeError` for a factor so large that the working
    size's shorter side, ``reference / stroke``, would fall under the network's ``min_size``."""
    stroke = parse_stroke(stroke)
    if stroke != NATIVE and reference / stroke < min_size:
        raise StrokeError(
            f"stroke {stroke:g} would paint at a shorter side of {reference / stroke:.1f} px, below the network's "
            f"minimum of {min_size} px; use at most {reference / min_size:g}"
        )
    return stroke


def working_size(height: int, width: int, stroke: Any, *, reference: int = REFERENCE_SIDE, min_size: int = 8) -> tuple[int, int]:
    """The (height, width) the network paints a ``height`` x ``width`` photo at.

    Stroke ``s`` paints at a shorter side of ``reference / s`` pixels, the aspect ratio kept, and
    never above the photo's own size (upscaling a photo adds no detail to paint, so strokes get no
    finer than the network's own). ``"native"`` is the photo's size. Bad factors raise
    :class:`StrokeError` (:func:`check_stroke`).
    """
    stroke = check_stroke(stroke, reference=reference, min_size=min_size)
    if stroke == NATIVE:
        return height, width
    scale = reference / stroke / min(height, width)
    if scale >= 1:
        return height, width
    return max(min_size, round(height * scale)), max(min_size, round(width * scale))


# --- array helpers: the same code for torch tensors and numpy arrays ---------------------------


def _torch():
    return sys.modules["torch"]  # only reached with a tensor, so PyTorch is loaded


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _index(values: np.ndarray, like: Any) -> Any:
    return values if _is_numpy(like) else _torch().as_tensor(values, device=like.device)


def _weights(values: np.ndarray, like: Any) -> Any:
    return values.astype(like.dtype) if _is_numpy(like) else _torch().as_tensor(values, dtype=like.dtype, device=like.device)


def _cumsum(x: Any, axis: int) -> Any:
    return np.cumsum(x, axis=axis) if _is_numpy(x) else _torch().cumsum(x, dim=axis)


def _stack(items: list, axis: int) -> Any:
    return np.stack(items, axis=axis) if _is_numpy(items[0]) else _torch().stack(items, dim=axis)


def _box_mean(x: Any, radius: int) -> Any:
    """Mean over the (2r+1)^2 window around each pixel of (..., H, W), the window clipped at the
    borders (the guided filter's O(1) box filter by running sums)."""
    for axis in (-1, -2):
        n = x.shape[axis]
        c = _cumsum(x, axis)
        hi = np.minimum(np.arange(n) + radius, n - 1)
        lo = np.arange(n) - radius - 1
        take = (lambda a, i: a[..., i]) if axis == -1 else (lambda a, i: a[..., i, :])
        upper = take(c, _index(hi, c))
        lower = take(c, _index(np.maximum(lo, 0), c))
        keep = _weights((lo >= 0).astype(np.float32), c)
        count = _weights((hi - np.maximum(lo, -1)).astype(np.float32), c)
        shape = (-1,) if axis == -1 else (-1, 1)
        x = (upper - lower * keep.reshape(shape)) / count.reshape(shape)
    return x


# --- resampling taps: half-pixel centres (align_corners=False), indices clamped at the borders ---


def _taps(out_size: int, in_size: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (out_size, T) for enlarging ``in_size`` samples to ``out_size``:
    bilinear (T = 2, as PyTorch's) or Lanczos-3 (T = 6, weights normalized to sum to 1)."""
    centre = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    if kind == "lanczos":
        base = np.floor(centre)
        offsets = np.arange(-2, 4)
        index = base[:, None] + offsets[None]
        d = centre[:, None] - index
        weight = np.sinc(d) * np.sinc(d / 3) * (np.abs(d) < 3)
        weight = weight / weight.sum(axis=1, keepdims=True)
    else:
        centre = np.maximum(centre, 0.0)  # PyTorch's bilinear clamps the coordinate at the start
        base = np.floor(centre)
        t = centre - base
        index = base[:, None] + np.arange(2)[None]
        weight = np.stack([1 - t, t], axis=1)
    return np.clip(index, 0, in_size - 1).astype(np.int64), weight.astype(np.float64)


def _resample_rows(x: Any, index: np.ndarray, weight: np.ndarray) -> Any:
    """Rows of (..., h, w) resampled by taps (rows, T) -> (..., rows, w)."""
    out = 0
    for t in range(index.shape[1]):
        out = out + x[..., _index(index[:, t], x), :] * _weights(weight[:, t], x)[:, None]
    return out


def _resample_columns(x: Any, width: int, kind: str, taps: tuple[np.ndarray, np.ndarray]) -> Any:
    """Columns of (..., rows, w) resampled to ``width``. PyTorch's own kernel where it computes the
    same taps (bilinear: it scales the rows by 1, exactly), else by the taps."""
    if not _is_numpy(x) and kind == "bilinear":
        F = _torch().nn.functional
        shape = x.shape
        flat = x.reshape(-1, 1, *shape[-2:]) if x.dim() != 4 else x
        out = F.interpolate(flat, size=(shape[-2], width), mode=kind, align_corners=False)
        return out.reshape(*shape[:-1], width)
    index, weight = taps
    out = 0
    for t in range(index.shape[1]):
        out = out + x[..., _index(index[:, t], x)] * _weights(weight[:, t], x)
    return out


def _solve_ridge(var: list[list[Any]], cov: list[list[Any]], prior: Any, eps: float) -> list[list[Any]]:
    """A (3x3 per pixel, A[j][i]: output channel j from guide channel i) minimising
    ``|p - A I - b|^2 + eps |A - prior * identity|^2`` in each window: ``(S + eps)^-1 (C + eps * prior)``
    by the closed-form inverse of the symmetric 3x3 matrix ``S + eps``."""
    s = [[var[i][j] + (eps if i == j else 0.0) for j in range(3)] for i in range(3)]
    c00 = s[1][1] * s[2][2] - s[1][2] * s[1][2]
    c01 = s[0][2] * s[1][2] - s[0][1] * s[2][2]
    c02 = s[0][1] * s[1][2] - s[0][2] * s[1][1]
    c11 = s[0][0] * s[2][2] - s[0][2] * s[0][2]
    c12 = s[0][1] * s[0][2] - s[0][0] * s[1][2]
    c22 = s[0][0] * s[1][1] - s[0][1] * s[0][1]
    det = s[0][0] * c00 + s[0][1] * c01 + s[0][2] * c02
    inv = [[c00, c01, c02], [c01, c11, c12], [c02, c12, c22]]
    rhs = [[cov[k][j] + (eps * prior if k == j else 0.0) for j in range(3)] for k in range(3)]  # rhs[k][j]: guide k, output j
    return [[sum(inv[i][k] * rhs[k][j] for k in range(3)) / det for i in range(3)] for j in range(3)]


def guided_upsample(painted: Any, photo_small: Any, photo: Any, *, prior: Any = 0.0, radius: int = RADIUS, eps: float = EPS, out: Any = None) -> Any:
    """The working-size painting ``painted`` (B, 3, h, w) brought to the size of ``photo``
    (B, 3, H, W), with the photo's edges, where ``photo_small`` is the photo as the network saw it
    (B, 3, h, w). All in [0, 1], float, tensors or arrays alike; returns the same kind, clipped to
    [0, 1] (written into ``out`` when given).

    ``prior``: the identity row's share of the blend, a number or a (B, 1, h, w) map: the detail gain
    the fit falls back to where the photo has no contrast (see the module). Where ``painted`` is
    ``photo_small`` and the prior is 1, the result is ``photo``.
    """
    h, w = painted.shape[-2:]
    H, W = photo.shape[-2:]
    if tuple(photo_small.shape[-2:]) != (h, w):
        raise ValueError(f"the painting is {w}x{h} but the photo it was painted from is {photo_small.shape[-1]}x{photo_small.shape[-2]}")
    I = [photo_small[:, i] for i in range(3)]
    p = [painted[:, j] for j in range(3)]
    mean_I = [_box_mean(c, radius) for c in I]
    mean_p = [_box_mean(c, radius) for c in p]
    var = [[None] * 3 for _ in range(3)]
    for i in range(3):
        for j in range(i, 3):
            var[i][j] = var[j][i] = _box_mean(I[i] * I[j], radius) - mean_I[i] * mean_I[j]
    cov = [[_box_mean(I[k] * p[j], radius) - mean_I[k] * mean_p[j] for j in range(3)] for k in range(3)]
    if not isinstance(prior, (int, float)):
        prior = prior[:, 0]
    A = _solve_ridge(var, cov, prior, eps)
    # Smooth the coefficients over the windows that share each pixel (as the guided filter does),
    # then keep what the smooth fit does not explain: the strokes.
    A = [[_box_mean(A[j][i], radius) for i in range(3)] for j in range(3)]
    residual = _stack([p[j] - sum(A[j][i] * I[i] for i in range(3)) for j in range(3)], axis=1)
    gains = _stack([A[j][i] for j in range(3) for i in range(3)], axis=1)  # (B, 9, h, w)

    if out is None:
        out = np.empty(photo.shape, photo.dtype) if _is_numpy(photo) else photo.new_empty(photo.shape)
    rows_bilinear, rows_lanczos = _taps(H, h, "bilinear"), _taps(H, h, RESIDUAL_KERNEL)
    columns_bilinear, columns_lanczos = _taps(W, w, "bilinear"), _taps(W, w, RESIDUAL_KERNEL)
    for top in range(0, H, STRIP_ROWS):
        rows = slice(top, min(H, top + STRIP_ROWS))
        g = _resample_columns(_resample_rows(gains, *(t[rows] for t in rows_bilinear)), W, "bilinear", columns_bilinear)
        r = _resample_columns(_resample_rows(residual, *(t[rows] for t in rows_lanczos)), W, RESIDUAL_KERNEL, columns_lanczos)
        full = photo[..., rows, :]
        strip = [r[:, j] + sum(g[:, 3 * j + i] * full[:, i] for i in range(3)) for j in range(3)]
        out[..., rows, :] = _stack(strip, axis=1).clip(0, 1)
    return out
