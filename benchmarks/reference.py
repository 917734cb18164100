"""The reference network and training step of the comparison: pytorch/examples' fast_neural_style.

Re-implemented here from Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution" (ECCV 2016), as pytorch/examples' ``fast_neural_style`` runs
it, so that the benchmark needs nothing from outside this repository:

* ``TransformerNet``: reflection-padded convolutions *with biases*, ``InstanceNorm2d(affine=True)``
  after every convolution but the last, five residual blocks, nearest x2 upsampling followed
  by a convolution, no output non-linearity; images in [0, 255].
* ``reference_training_step``: the body of that example's training loop: normalize both
  batches with the ImageNet statistics, run VGG-16 up to relu4_3 on the output *and* on the
  photo (with autograd on), content MSE at relu2_2, Gram MSE at relu1_2/2_2/3_3/4_3, Adam,
  and ``.item()`` on both terms every step, eager float32.

The architecture has the same convolutions as :class:`cin_style.StyleTransformer` at width
1.0 (153,792 multiply-adds per pixel), so differences in speed come from everything else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cin_style.losses.vgg import IMAGENET_MEAN, IMAGENET_STD, LAYER_INDEX, VGG16Features

__all__ = ["TransformerNet", "ReferenceTrainer"]


class ConvLayer(nn.Module):
    """Reflection padding, then a convolution with bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(ConvLayer):
    """Nearest-neighbour upsampling, then :class:`ConvLayer` (no transposed convolution)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, upsample: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.interpolate(x, mode="nearest", scale_factor=self.upsample))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class TransformerNet(nn.Module):
    """Johnson et al.'s image transformation network as pytorch/examples builds it (one style)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvLayer(3, 32, kernel_size=9)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res = nn.Sequential(*[ResidualBlock(128) for _ in range(5)])
        self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, kernel_size=9)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def gram_matrix(y: Tensor) -> Tensor:
    """The example's Gram matrix, normalized by C*H*W."""
    b, ch, h, w = y.size()
    features = y.view(b, ch, w * h)
    return features.bmm(features.transpose(1, 2)) / (ch * h * w)


def normalize_batch(batch: Tensor) -> Tensor:
    """[0, 255] images to ImageNet-normalized VGG input, as the example's ``utils.normalize_batch``."""
    mean = batch.new_tensor(IMAGENET_MEAN).view(-1, 1, 1)
    std = batch.new_tensor(IMAGENET_STD).view(-1, 1, 1)
    return (batch.div(255.0) - mean) / std


class ReferenceTrainer:
    """The example's optimizer, loss network and loop body, for timing one step at a time.

    ``vgg`` must reach relu4_3; only its raw layers are used (``vgg.features``), because the
    example normalizes the batches itself (:func:`normalize_batch`). Both batches go through
    VGG-16 with autograd on, as in the example.
    """

    STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

    def __init__(self, *, vgg: VGG16Features, style_image: Tensor, content_weight: float = 1e5, style_weight: float = 1e10) -> None:
        missing = set(self.STYLE_LAYERS) - set(vgg.layers)
        if missing:
            raise ValueError(f"the VGG network does not compute {sorted(missing)}")
        self.vgg = vgg.features  # the raw layers: the example normalizes outside the network
        self.transformer = TransformerNet().to(style_image.device)
        self.optimizer = torch.optim.Adam(self.transformer.parameters(), lr=1e-3)
        self.content_weight = content_weight
        self.style_weight = style_weight
        with torch.no_grad():
            self.gram_style = [gram_matrix(f) for f in self._features(normalize_batch(style_image * 255.0))]

    def _features(self, x: Tensor) -> list[Tensor]:
        wanted = [LAYER_INDEX[name] for name in self.STYLE_LAYERS]
        out = []
        for i, layer in enumerate(self.vgg[: wanted[-1] + 1]):
            x = layer(x)
            if i in wanted:
                out.append(x)
        return out

    def step(self, x: Tensor) -> tuple[float, float]:
        """One step on a batch ``x`` of photos in [0, 255]; returns (content, style) loss."""
        n_batch = len(x)
        self.optimizer.zero_grad()
        y = self.transformer(x)
        y = normalize_batch(y)
        x = normalize_batch(x)
        features_y = self._features(y)
        features_x = self._features(x)
        content_loss = self.content_weight * F.mse_loss(features_y[1], features_x[1])
        style_loss = 0.0
        for ft_y, gm_s in zip(features_y, self.gram_style):
            style_loss += F.mse_loss(gram_matrix(ft_y), gm_s.expand(n_batch, -1, -1))
        style_loss *= self.style_weight
        total = content_loss + style_loss
        total.backward()
        self.optimizer.step()
        return content_loss.item(), float(style_loss.item())
