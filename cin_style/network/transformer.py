"""The style transformer: one feed-forward network for N styles.

The network follows Magenta's ``image_stylization`` layout (Dumoulin, Shlens & Kudlur,
"A Learned Representation for Artistic Style", ICLR 2017), which itself refines the
transformer of Johnson, Alahi & Fei-Fei (2016). Every convolution is shared between the
styles; a style lives only in the gamma/beta rows of the conditional instance norms.

This module knows nothing of training, files or Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cin_style.network.fastconv import conv2d, eager_inference
from cin_style.network.padding import centred_pad, padded_size
from cin_style.network.phase import phase_conv3x3, replicate_pad, upsample_conv3x3

#: A window of a feature map: rows [r0, r1) and columns [c0, c1).
Region = tuple[int, int, int, int]

__all__ = [
    "ConditionalInstanceNorm2d",
    "PhotoSkip",
    "Statistics",
    "custom_statistics",
    "StyleTransformer",
    "TransformerConfig",
    "one_hot_styles",
]


#: Names of the per-style parameters (see :meth:`StyleTransformer.style_tables`).
STYLE_TABLES = (".gamma", ".beta", ".gain")


def one_hot_styles(index: Tensor | int | list[int], num_styles: int) -> Tensor:
    """Style-weight rows (B, N) that select one style per sample."""
    index = torch.as_tensor(index).reshape(-1)
    return F.one_hot(index.long(), num_styles).float()


def resize_style_map(style: Tensor, num_styles: int, size: tuple[int, int]) -> Tensor:
    """Style weights as a (B, N, h, w) map: (h, w) is (1, 1) for per-sample weights (B, N), else
    ``size``: a per-pixel map (B, N, H, W) is resized to it."""
    if style.dim() == 2:
        style = style[:, :, None, None]
    elif style.dim() != 4:
        raise ValueError(f"style weights must be (B, N) or (B, N, H, W), got {tuple(style.shape)}")
    if style.shape[1] != num_styles:
        raise ValueError(f"style weights have {style.shape[1]} styles, the layer has {num_styles}")
    h, w = style.shape[-2:]
    if (h, w) != (1, 1) and (h, w) != tuple(size):
        # Bilinear resampling is itself a convex combination, so convex weights stay convex.
        shrink = h > size[0] or w > size[1]
        style = F.interpolate(style, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)
    return style


def blend_rows(style_map: Tensor, table: Tensor) -> Tensor:
    """A per-style table (N, C) blended by a style map (B, N, h, w) into (B, C, h, w)."""
    return torch.einsum("bnhw,nc->bchw", style_map.to(table.dtype), table)


class ConditionalInstanceNorm2d(nn.Module):
    """Instance normalization with one learned (gamma, beta) pair per style.

    Dumoulin et al. (2017) show that a whole style can be captured by the affine
    parameters of the normalization layers, so a convex combination of two styles'
    gamma/beta rows interpolates between the styles. The layer is conditioned by a
    style-weight tensor ``w``:

    * ``(B, N)``: per-sample weights; one-hot selects a style, convex weights blend styles;
    * ``(B, N, H, W)``: per-pixel weights, resized to this layer's resolution, so regions
      of one image can carry different styles.

    Both shapes go through the same code: a vector is a constant 1x1 map. Statistics are
    taken over H and W of each sample (no running statistics: the normalization is the
    same at training and inference time).
    """

    def __init__(self, num_features: int, *, num_styles: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_styles < 1:
            raise ValueError(f"num_styles must be at least 1, got {num_styles}")
        self.num_features = num_features
        self.num_styles = num_styles
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(num_styles, num_features))
        self.beta = nn.Parameter(torch.zeros(num_styles, num_features))
        #: Set only inside :func:`custom_statistics`: (x, style map) -> (mean, var) to use instead of x's own.
        self.statistics: Statistics | None = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_styles={self.num_styles}, eps={self.eps}"

    def style_map(self, style: Tensor, size: tuple[int, int]) -> Tensor:
        """Style weights as a (B, N, h, w) map at this layer's resolution (see :func:`resize_style_map`)."""
        return resize_style_map(style, self.num_styles, size)

    def affine(self, style_map: Tensor) -> tuple[Tensor, Tensor]:
        """Blend the gamma/beta table with a style map from :meth:`style_map` into (B, C, h, w) maps."""
        return blend_rows(style_map, self.gamma), blend_rows(style_map, self.beta)

    def normalize(self, x: Tensor, mean: Tensor, var: Tensor, style_map: Tensor) -> Tensor:
        """Normalize ``x`` with given (B, C, 1, 1) statistics, then apply the style's gamma/beta.

        :meth:`forward` passes the statistics of ``x`` itself; exact tiled inference
        (:mod:`cin_style.network.tiling`) passes statistics gathered over the whole image.
        """
        if style_map.shape[-2:] == (1, 1) and mean.shape[-2:] == (1, 1):
            return self._batch_norm(x, style_map, (mean, var))
        gamma, beta = self.affine(style_map)
        # Normalize in float32 even under autocast: the variance of a small map in bf16 is
        # too coarse and the layer's whole job is these statistics.
        normalized = ((x.float() - mean.float()) * torch.rsqrt(var.float() + self.eps)).to(x.dtype)
        return normalized * gamma.to(x.dtype) + beta.to(x.dtype)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        style_map = self.style_map(style, (x.shape[-2], x.shape[-1]))
        if self.statistics is not None:
            mean, var = self.statistics(x, style_map)
            return self.normalize(x, mean, var, style_map)
        if style_map.shape[-2:] == (1, 1):  # the common case: one style row per sample
            return self._batch_norm(x, style_map, None)
        var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, unbiased=False)
        return self.normalize(x, mean, var, style_map)

    def _batch_norm(self, x: Tensor, style_map: Tensor, statistics: tuple[Tensor, Tensor] | None) -> Tensor:
        """Per-sample gamma/beta in one native kernel: ``x``'s own statistics, or the given (mean, var).

        Instance norm of (B, C, H, W) is batch norm of (1, B*C, H, W), so the blended (B, C)
        gamma/beta go in as that batch norm's per-channel affine. One pass over ``x`` instead of
        five (mean, variance, subtract, scale, shift): at 512x512 on a CPU the norms cost a fifth
        of the network before, and now no more than the plain InstanceNorm2d of the reference
        network. The kernel accumulates its statistics in float32 whatever the input's dtype.
        """
        b, c, h, w = x.shape
        gamma, beta = (t.reshape(b * c) for t in self.affine(style_map))
        mean, var = (None, None) if statistics is None else (s.reshape(b * c).float() for s in statistics)
        y = F.batch_norm(x.reshape(1, b * c, h, w), mean, var, gamma, beta, training=statistics is None, eps=self.eps)
        return y.reshape(b, c, h, w)


#: ``(index of the norm, its input x, its style map) -> (mean, var)``, broadcastable to x.
Statistics = Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]


@contextmanager
def custom_statistics(transformer: nn.Module, statistics: Statistics) -> Iterator[None]:
    """Inside the block, every conditional instance norm of ``transformer`` normalizes with
    ``statistics(i, x, style_map)`` (i: the norm's position in forward order) instead of the
    mean and variance of its own input. Used for exact per-region statistics under style
    masks (:mod:`cin_style.inference.masks`); the weights are untouched.
    """
    norms = [m for m in transformer.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    for i, norm in enumerate(norms):
        norm.statistics = lambda x, style_map, i=i: statistics(i, x, style_map)
    try:
        yield
    finally:
        for norm in norms:
            norm.statistics = None


class ConvCIN(nn.Module):
    """Reflection-padded convolution without bias, followed by conditional instance norm.

    Reflection padding instead of zero padding avoids dark borders (Johnson et al. 2016,
    Ulyanov et al. 2016). The conv needs no bias: the norm's beta replaces it. With
    ``upsample`` the input is first enlarged by nearest-neighbour x2, which avoids the
    checkerboard artefacts of transposed convolutions (Odena, Dumoulin & Olah, 2016).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        stride: int = 1,
        upsample: bool = False,
        num_styles: int,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.norm = ConditionalInstanceNorm2d(out_channels, num_styles=num_styles)

    @property
    def phased(self) -> bool:
        """Whether the upsampling convolution runs as four phases at the input's resolution (:func:`cin_style.network.phase.upsample_conv3x3`)."""
        return self.upsample and self.conv.kernel_size == (3, 3) and self.conv.stride == (1, 1)

    def convolve(self, x: Tensor) -> Tensor:
        """The convolution (after the optional x2 upsampling), before the norm."""
        if self.phased:
            return upsample_conv3x3(x, self.conv.weight)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return conv2d(self.pad(x), self.conv.weight, stride=self.conv.stride[0])

    def convolve_window(self, read: Callable[[Region], Tensor], region: Region, in_size: tuple[int, int]) -> Tensor:
        """:meth:`convolve` over one window of its output, ``region`` = (r0, r1, c0, c1): rows
        [r0, r1) and columns [c0, c1), from an input of ``in_size`` of which it reads only the
        window it needs, through ``read(window)`` (input coordinates, inside the input).

        Equals ``convolve(x)[..., r0:r1, c0:c1]`` up to rounding: inside the image the window's
        neighbours are real pixels, and the reflection (or, for the phased upsampling, the edge
        repeated) applies only where the window meets the image border, exactly as in the whole
        pass. The exact tiles of :mod:`cin_style.network.tiling` are built on it.
        """
        r0, r1, c0, c1 = region
        if self.phased:
            # Output rows [r0, r1) come from input rows [r0 // 2, (r1 - 1) // 2] and one more on either side.
            h, w = in_size
            a0, a1, b0, b1 = r0 // 2, (r1 - 1) // 2 + 1, c0 // 2, (c1 - 1) // 2 + 1
            x = read((max(0, a0 - 1), min(h, a1 + 1), max(0, b0 - 1), min(w, b1 + 1)))
            pads = (int(b0 == 0), int(b1 == w), int(a0 == 0), int(a1 == h))
            if any(pads):
                x = replicate_pad(x, pads)
            y = phase_conv3x3(x, self.conv.weight)
            return y[..., r0 - 2 * a0 : r1 - 2 * a0, c0 - 2 * b0 : c1 - 2 * b0]
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        p = k // 2
        up = 2 if self.upsample else 1
        # The padded, (upsampled) input rows/columns this output window reads, in unpadded coordinates.
        need = [(r0 * s - p, (r1 - 1) * s + k - p), (c0 * s - p, (c1 - 1) * s + k - p)]
        clipped = [(max(0, a), min(n * up, b)) for (a, b), n in zip(need, in_size)]
        (top, bottom), (left, right) = [(lo - a, b - hi) for (a, b), (lo, hi) in zip(need, clipped)]
        (u0, u1), (v0, v1) = clipped
        if up == 1:
            x = read((u0, u1, v0, v1))
        else:
            x = F.interpolate(read((u0 // 2, (u1 - 1) // 2 + 1, v0 // 2, (v1 - 1) // 2 + 1)), scale_factor=2, mode="nearest")
            x = x[..., u0 - 2 * (u0 // 2) :, v0 - 2 * (v0 // 2) :][..., : u1 - u0, : v1 - v0]
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), mode="reflect")
        return conv2d(x, self.conv.weight, stride=s)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (H, W) this layer makes of an input of ``size``."""
        up = 2 if self.upsample else 1
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        return tuple((n * up + 2 * (k // 2) - k) // s + 1 for n in size)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.norm(self.convolve(x), style)


#: A layer's activation after its norm, called as ``act(y, inplace=...)`` (as ``F.relu``);
#: None: the layer's output is used as it is.
Activation = Callable[..., Tensor] | None


@dataclass(frozen=True)
class Stage:
    """Conv-CIN layers run in order, each followed by its activation; with ``residual`` the
    stage's input is added to its output. The transformer is a list of stages
    (:meth:`StyleTransformer.stages`), which its forward pass and the exact tiler
    (:mod:`cin_style.network.tiling`) both walk."""

    layers: tuple[tuple[ConvCIN, Activation], ...]
    residual: bool = False

    def __call__(self, x: Tensor, style: Tensor) -> Tensor:
        y = x
        for layer, act in self.layers:
            y = layer(y, style)
            # Every layer's output is a fresh tensor, so at inference the activation and the
            # residual sum can overwrite it: no new buffer (at 512 px on a CPU, fresh buffers
            # cost page faults as well as the writes).
            if act is not None:
                y = act(y, inplace=eager_inference(y))
        if not self.residual:
            return y
        return y.add_(x) if eager_inference(x, y) else x + y


class ResidualBlock(nn.Module):
    """Two 3x3 conv-CIN layers with an identity skip (He et al. 2016, as in Johnson et al.).

    ReLU follows the first layer only and nothing follows the addition, so the block can
    represent the identity easily (Gross & Wilber, "Training and investigating residual nets").
    """

    def __init__(self, channels: int, *, num_styles: int) -> None:
        super().__init__()
        self.conv1 = ConvCIN(channels, channels, kernel_size=3, num_styles=num_styles)
        self.conv2 = ConvCIN(channels, channels, kernel_size=3, num_styles=num_styles)

    @property
    def stage(self) -> Stage:
        return Stage(((self.conv1, F.relu), (self.conv2, None)), residual=True)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.stage(x, style)


class PhotoSkip(nn.Module):
    """A per-style skip from the photo to the output: ``sigmoid(logits + gain * logit(photo))``.

    Every layer of the transformer is followed by an instance norm, and the first one already
    makes the network blind to the photo's overall brightness and contrast: for ``a > 0``, the
    photos ``x`` and ``a * x + b`` give the same first convolution up to ``a`` and ``b``, which
    the norm removes, so they give the same output. For a painting's row that is the point (the
    palette belongs to the painting); for the identity row, which should give the photo back
    (the strength dial's zero), it caps the PSNR near 20 dB whatever the training. This skip
    carries the photo itself to the output, in logit space so that a gain of 1 with a zero
    last-layer map returns the photo exactly and a blend of rows (the strength dial) mixes the
    stylized logits with the photo's. One gain per style and channel, blended like gamma/beta;
    every gain starts at 0, the network without the skip, so that training decides how much of
    the photo each style lets through (model files from before the skip read with zeros).
    """

    #: The photo is clamped to [eps, 1 - eps] before the logit: 8-bit black and white stay finite
    #: (logit 6.9) and still come back as 0 and 255.
    eps = 1e-3

    def __init__(self, channels: int = 3, *, num_styles: int) -> None:
        super().__init__()
        self.num_styles = num_styles
        self.gain = nn.Parameter(torch.zeros(num_styles, channels))

    def extra_repr(self) -> str:
        return f"{self.gain.shape[1]}, num_styles={self.num_styles}"

    def forward(self, logits: Tensor, images: Tensor, style: Tensor) -> Tensor:
        """Output images from the last layer's ``logits`` and the ``images`` (same size) they were made from."""
        gain = blend_rows(resize_style_map(style, self.num_styles, tuple(images.shape[-2:])), self.gain)
        photo = torch.logit(images.float().clamp(self.eps, 1 - self.eps))
        # In float32 even under autocast: in bfloat16 the photo's logits (up to +-6.9) keep 8 bits,
        # which alone would cost the identity row (the photo given back) most of its PSNR.
        return torch.sigmoid(logits.float() + gain.float() * photo)


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture hyper-parameters, enough to rebuild a :class:`StyleTransformer`."""

    num_styles: int
    width: float = 1.0
    num_residual_blocks: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


class StyleTransformer(nn.Module):
    """Feed-forward stylization network conditioned on style weights.

    Layout (Magenta image_stylization): conv 9x9/1 -> 32, conv 3x3/2 -> 64, conv 3x3/2 ->
    128, ``num_residual_blocks`` (five) residual blocks at 128, nearest x2 + conv 3x3 -> 64, nearest x2 + conv 3x3 ->
    32, conv 9x9 -> 3, sigmoid. CIN after every conv, including the last. ``width`` scales
    the channel counts (at least one channel each). One addition to Magenta's layout: a
    per-style skip from the photo into the last sigmoid (:class:`PhotoSkip`), without which
    the identity row cannot give the photo back.

    ``forward(images, style)`` takes images (B, 3, H, W) in [0, 1] of any size and style
    weights of shape (B, N) or (B, N, H, W) (see :class:`ConditionalInstanceNorm2d`) and
    returns images of the same size in [0, 1].
    """

    #: The two stride-2 convolutions need sides divisible by 4; the 3x3 reflection pads at
    #: the lowest resolution need at least 2 pixels there.
    size_multiple = 4
    min_size = 8

    def __init__(self, *, num_styles: int, width: float = 1.0, num_residual_blocks: int = 5) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if num_residual_blocks < 0:
            raise ValueError(f"num_residual_blocks must be 0 or more, got {num_residual_blocks}")
        self.config = TransformerConfig(num_styles=num_styles, width=width, num_residual_blocks=num_residual_blocks)
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        kw = {"num_styles": num_styles}
        self.encoder = nn.ModuleList(
            [
                ConvCIN(3, c1, kernel_size=9, **kw),
                ConvCIN(c1, c2, kernel_size=3, stride=2, **kw),
                ConvCIN(c2, c3, kernel_size=3, stride=2, **kw),
            ]
        )
        self.residuals = nn.ModuleList([ResidualBlock(c3, **kw) for _ in range(num_residual_blocks)])
        self.decoder = nn.ModuleList(
            [
                ConvCIN(c3, c2, kernel_size=3, upsample=True, **kw),
                ConvCIN(c2, c1, kernel_size=3, upsample=True, **kw),
            ]
        )
        self.output = ConvCIN(c1, 3, kernel_size=9, **kw)
        self.photo = PhotoSkip(3, **kw)

    @property
    def num_styles(self) -> int:
        return self.config.num_styles

    def with_new_styles(self, count: int) -> StyleTransformer:
        """A copy with ``count`` more styles: every convolution and every existing gamma/beta row
        copied exactly, the new rows initialised to the mean of the existing ones (a style the
        shared convolutions already know how to render, rather than the untrained gamma=1, beta=0).
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        return self.with_style_rows([*range(self.config.num_styles), *[None] * count])

    def with_style_rows(self, rows: Sequence[int | None]) -> StyleTransformer:
        """A copy with ``len(rows)`` styles: every convolution copied exactly, and style ``i``'s
        gamma/beta rows taken from this model's style ``rows[i]``, or the mean of its rows where
        ``rows[i]`` is None (new styles, reordering, starting a run from another model's styles)."""
        c = self.config
        if any(r is not None and not 0 <= r < c.num_styles for r in rows):
            raise ValueError(f"style rows must lie in 0..{c.num_styles - 1}, got {list(rows)}")
        copy = StyleTransformer(num_styles=len(rows), width=c.width, num_residual_blocks=c.num_residual_blocks)
        state = self.state_dict()
        tables = self.style_tables()
        with torch.no_grad():
            for key, value in copy.state_dict().items():
                old = state[key]
                if key in tables:  # (N, C) tables: row by row
                    for i, r in enumerate(rows):
                        value[i] = old[r] if r is not None else old.mean(dim=0)
                else:
                    value.copy_(old)
        return copy.to(next(self.parameters()).device)

    def widened(self, width: float, *, generator: torch.Generator | None = None) -> StyleTransformer:
        """A copy at a larger ``width`` that computes the same function (Net2WiderNet: Chen,
        Goodfellow & Shlens, "Net2Net: Accelerating Learning via Knowledge Transfer", ICLR 2016),
        so that a wider network continues a trained one's run instead of starting over.

        Each new channel copies an existing one: its convolution filter and its gamma/beta column
        in every style. A copy's map is its original's exactly, before and after the instance norm
        (the norm of equal maps is equal). Every layer that reads a copied channel splits the
        original's input weights among the copies by random positive shares that sum to one,
        so its output is unchanged; unequal shares give the copies unequal gradients, which equal
        ones would not (the copies would stay copies). The residual stream is one set of channels:
        the third encoder layer and every block's second layer copy the same channels into it.
        """
        c = self.config
        wide = StyleTransformer(num_styles=c.num_styles, width=width, num_residual_blocks=c.num_residual_blocks)

        def copies(old: int, new: int) -> Tensor:
            """Which old channel each of ``new`` channels is: the old ones, then copies of distinct ones first."""
            if new < old:
                raise ValueError(f"widened() makes a network wider, not narrower: width {c.width} -> {width}")
            rounds = -(-(new - old) // old)  # 0 where the width's rounding leaves a layer as it was
            extra = [torch.randperm(old, generator=generator) for _ in range(rounds)]
            return torch.cat([torch.arange(old), *extra])[:new]

        def shares(source: Tensor) -> Tensor:
            """For input channels that copy ``source[m]``: shares in [1/3, 1] of a whole, summing to 1 per original."""
            draw = 1.0 + 2.0 * torch.rand(len(source), generator=generator, dtype=torch.float64)
            total = torch.zeros(int(source.max()) + 1, dtype=torch.float64).index_add_(0, source, draw)
            return draw / total[source]

        def width_of(layer: ConvCIN) -> int:
            return layer.conv.out_channels

        rgb = torch.arange(3)
        layers: list[tuple[str, Tensor, Tensor]] = []  # (name in both networks, input channels, output channels)
        enc = [copies(width_of(old), width_of(new)) for old, new in zip(self.encoder, wide.encoder)]
        layers += [("encoder.0", rgb, enc[0]), ("encoder.1", enc[0], enc[1]), ("encoder.2", enc[1], enc[2])]
        for i, (old, new) in enumerate(zip(self.residuals, wide.residuals)):
            inner = copies(width_of(old.conv1), width_of(new.conv1))
            layers += [(f"residuals.{i}.conv1", enc[2], inner), (f"residuals.{i}.conv2", inner, enc[2])]
        dec = [copies(width_of(old), width_of(new)) for old, new in zip(self.decoder, wide.decoder)]
        layers += [("decoder.0", enc[2], dec[0]), ("decoder.1", dec[0], dec[1]), ("output", dec[1], rgb)]

        old_layers, new_layers = dict(self.named_modules()), dict(wide.named_modules())
        with torch.no_grad():
            for name, inputs, outputs in layers:
                old, new = old_layers[name], new_layers[name]
                weight = old.conv.weight.double()[outputs][:, inputs] * shares(inputs).view(1, -1, 1, 1)
                new.conv.weight.copy_(weight)
                new.norm.gamma.copy_(old.norm.gamma[:, outputs])
                new.norm.beta.copy_(old.norm.beta[:, outputs])
            wide.photo.gain.copy_(self.photo.gain)
        return wide.to(next(self.parameters()).device)

    def style_tables(self) -> dict[str, nn.Parameter]:
        """Every per-style table (one row per style, by parameter name): the norms' gamma and beta
        and the photo skip's gains. Everything else is shared by all styles."""
        return {name: p for name, p in self.named_parameters() if name.endswith(STYLE_TABLES)}

    def norms(self) -> list[ConditionalInstanceNorm2d]:
        """Every conditional instance norm, in forward order."""
        return [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)]

    def stages(self) -> list[Stage]:
        """The network as :class:`Stage` s, in order: the encoder, each residual block, the decoder
        with the output layer (whose output is the logits :class:`PhotoSkip` turns into images)."""
        encoder = Stage(tuple((layer, F.relu) for layer in self.encoder))
        decoder = Stage((*((layer, F.relu) for layer in self.decoder), (self.output, None)))
        return [encoder, *(block.stage for block in self.residuals), decoder]

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of (height, width) is padded to before the first layer."""
        return padded_size(height, width, multiple=self.size_multiple, min_size=self.min_size)

    def pad(self, x: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """Pad images (and a per-pixel style map of their size) to :meth:`padded_size`, centred:
        reflection where the image is large enough, else the edge repeated (1-pixel images)
        (:func:`cin_style.network.padding.centred_pad`, which every engine shares).

        From ``min_size`` up the pad is always applied (zero-wide where the size is a multiple
        already) and its widths are plain arithmetic on the size: the graph exported to ONNX
        (:mod:`cin_style.io.export`) is this code, traced once for every size."""
        h, w = x.shape[-2:]
        pad, reflect = centred_pad(h, w, multiple=self.size_multiple, min_size=self.min_size)
        x = F.pad(x, pad, mode="reflect" if reflect else "replicate")
        if style.dim() == 4 and style.shape[-2:] == (h, w):
            style = F.pad(style, pad, mode="replicate")
        return x, style

    def forward(self, images: Tensor, style: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if style.shape[0] != images.shape[0]:
            raise ValueError(f"{style.shape[0]} style-weight rows for {images.shape[0]} images")
        h, w = images.shape[-2:]
        x, padded_style = self.pad(images, style)
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        for stage in self.stages():
            x = stage(x, padded_style)
        return self.photo(x[..., top : top + h, left : left + w], images, style)
