"""cin-style: one feed-forward network that paints a photo in any of N styles, or any blend.

Conditional instance normalization (Dumoulin, Shlens & Kudlur, ICLR 2017) trained with
perceptual losses (Johnson, Alahi & Fei-Fei, ECCV 2016).
"""

from .api import StyleModel
from .loss import PerceptualLoss, gram_matrix
from .model import ConditionalInstanceNorm2d, StyleTransformer, TransformerConfig, one_hot_styles
from .vgg import VGG16Features, VGGWeightsError, resolve_vgg16_weights

__version__ = "0.1.0"

__all__ = [
    "ConditionalInstanceNorm2d",
    "PerceptualLoss",
    "StyleModel",
    "StyleTransformer",
    "TransformerConfig",
    "VGG16Features",
    "VGGWeightsError",
    "gram_matrix",
    "one_hot_styles",
    "resolve_vgg16_weights",
]
