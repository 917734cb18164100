"""Choosing and mixing styles: names, indices and weights turned into one convex weight vector.

The CIN paper blends styles by a convex combination of their gamma/beta rows; this module
only decides the combination. A style is given as

* a name (``"great_wave"``) or an index (``0``);
* a mapping of names (or indices) to weights (``{"starry_night": 0.7, "great_wave": 0.3}``);
* the command-line form ``"starry_night=0.7,great_wave=0.3"`` (a bare name means weight 1);
* a :class:`Blend`, a selection already parsed for these names (:func:`parse_style`): the
  command line, the app and the Python API parse what the user gave once, at the edge, and
  pass the :class:`Blend` down, which no layer below parses again.

Weights are normalized to sum to 1. Unknown names, negative or non-finite weights, all-zero
mixes and names given twice are errors that list the known names. The strength dial blends a
selection with the identity row. Plain Python: the ONNX runtime path uses it without PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["IDENTITY", "Blend", "StyleError", "StyleSpec", "blend_weights", "parse_style", "check_strength", "parse_style_string", "style_weights", "with_strength"]

StyleSpec = Union[str, int, Mapping[Union[str, int], float], "Blend"]

#: The reserved name of the gamma/beta row trained to reproduce the photo (the strength dial's 0).
IDENTITY = "identity"


class StyleError(ValueError):
    """A style selection that cannot be used; the message lists the known styles."""


@dataclass(frozen=True)
class Blend:
    """A style selection parsed once: one non-negative weight per style of ``names`` (a model's
    table order), summing to 1. Given as a style it is used as it is, never parsed again."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    #: What the user gave, in the command line's form (weights as given, not normalized).
    given: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        """The command line's form: what the user gave (``"a=1,b=0.6"``) where known, else the
        normalized weights (``"a=0.625,b=0.375"``), or the bare name of a single style."""
        if self.given:
            return self.given
        picked = [(n, w) for n, w in zip(self.names, self.weights) if w > 0]
        if len(picked) == 1:
            return picked[0][0]
        return ",".join(f"{n}={w:.4g}" for n, w in picked)


def parse_style(style: StyleSpec, names: Sequence[str]) -> Blend:
    """What the user gave (a name, an index, a mapping, the command line's string) as a
    :class:`Blend` of ``names``; :class:`StyleError` for one that cannot be used."""
    if isinstance(style, Blend):
        blend_weights(style, names)  # made for these names, or a StyleError
        return style
    weights = tuple(blend_weights(style, names))
    given = style if isinstance(style, str) else ",".join(f"{k}={float(v):g}" for k, v in style.items() if float(v) > 0) if isinstance(style, Mapping) else None
    return Blend(tuple(names), weights, given)


def _known(names: Sequence[str]) -> str:
    return "known styles: " + ", ".join(names)


def parse_style_string(text: str) -> dict[str, float]:
    """``"a=0.7,b=0.3"`` -> ``{"a": 0.7, "b": 0.3}``; ``"a"`` -> ``{"a": 1.0}``."""
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise StyleError(f"empty entry in style {text!r}")
        name, sep, value = part.partition("=")
        name = name.strip()
        if not name:
            raise StyleError(f"missing style name in {part!r}")
        try:
            weight = float(value) if sep else 1.0
        except ValueError:
            raise StyleError(f"weight of {name!r} is not a number: {value.strip()!r}") from None
        if name in out:
            raise StyleError(f"style {name!r} is given twice in {text!r}")
        out[name] = weight
    return out


def _index(key: str | int, names: Sequence[str]) -> int:
    if isinstance(key, bool):
        raise StyleError(f"not a style: {key!r}; {_known(names)}")
    if isinstance(key, int):
        if not 0 <= key < len(names):
            raise StyleError(f"style index {key} is out of range 0..{len(names) - 1}; {_known(names)}")
        return key
    if key in names:
        return list(names).index(key)
    if isinstance(key, str) and key.isascii() and key.isdigit() and int(key) < len(names):  # "²".isdigit() is True too
        return int(key)
    raise StyleError(f"unknown style {key!r}; {_known(names)}")


def blend_weights(style: StyleSpec, names: Sequence[str], *, strength: float = 1.0) -> list[float]:
    """Non-negative weights, one per name, summing to 1; with ``strength`` < 1 blended towards
    the identity row (:func:`check_strength`)."""
    if isinstance(style, Blend):
        if style.names != tuple(names):
            raise StyleError(f"this blend was made for other styles ({', '.join(style.names)}); {_known(names)}")
        weights = list(style.weights)
        return weights if strength == 1.0 else with_strength(weights, strength, names)
    if isinstance(style, str) and ("=" in style or "," in style):
        style = parse_style_string(style)
    if isinstance(style, (str, int)):
        style = {style: 1.0}
    if not isinstance(style, Mapping):
        raise StyleError(f"a style is a name, an index or a mapping of names to weights, not {type(style).__name__}; {_known(names)}")
    if not style:
        raise StyleError(f"no style given; {_known(names)}")
    weights = [0.0] * len(names)
    seen: set[int] = set()
    for key, value in style.items():
        i = _index(key, names)
        if i in seen:
            raise StyleError(f"style {names[i]!r} is given twice")
        seen.add(i)
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise StyleError(f"weight of {names[i]!r} is not a number: {value!r}") from None
        if not math.isfinite(w):
            raise StyleError(f"weight of {names[i]!r} is not finite: {w}")
        if w < 0:
            raise StyleError(f"weight of {names[i]!r} is negative: {w}")
        weights[i] = w
    top = max(weights)
    if top <= 0:
        raise StyleError(f"the style weights are all zero; {_known(names)}")
    weights = [w / top for w in weights]  # so that huge weights cannot overflow the sum
    total = sum(weights)
    weights = [w / total for w in weights]
    return weights if strength == 1.0 else with_strength(weights, strength, names)


def with_strength(weights, strength: float, names: Sequence[str]):
    """``weights`` dialed towards the identity row: ``strength * w + (1 - strength) * identity``.

    ``weights`` is a list of N numbers, or a tensor whose first axis is the N styles (a vector
    (N,) or per-pixel maps (N, H, W)); the result is of the same kind. :func:`check_strength` first."""
    check_strength(strength, names)
    identity = list(names).index(IDENTITY)
    if isinstance(weights, list):
        return [strength * w + (1 - strength) * (i == identity) for i, w in enumerate(weights)]
    out = weights * strength
    out[identity] += 1 - strength
    return out


def check_strength(strength: float, names: Sequence[str]) -> None:
    """Raise :class:`StyleError` unless ``strength`` is in [0, 1] and ``names`` has the identity row."""
    if not (0.0 <= strength <= 1.0):  # also refuses NaN
        raise StyleError(f"strength must be between 0 and 1, got {strength}")
    if IDENTITY not in names:
        raise StyleError(
            f"this model has no {IDENTITY!r} row, so the strength dial is not available; train with "
            f"identity_row=true, or add one: cin-style train experiment=add_styles base_model=MODEL 'new_styles=[{IDENTITY}]'"
        )


def style_weights(style: StyleSpec, names: Sequence[str], *, strength: float = 1.0) -> Tensor:
    """:func:`blend_weights` as a float32 tensor (N,)."""
    import torch

    return torch.tensor(blend_weights(style, names, strength=strength), dtype=torch.float32)
