"""How an image is padded before the network, in one function for every engine.

The two stride-2 convolutions need sides divisible by ``multiple`` (4), and the first layers'
reflection pads need at least ``min_size`` pixels. :func:`centred_pad` gives the pad widths and
whether reflection applies; :meth:`cin_style.network.transformer.StyleTransformer.pad` (PyTorch,
and the graph exported to ONNX), :meth:`cin_style.inference.onnx_model.OnnxStyleModel.run`
(NumPy, for the sizes the graph does not take) and the steady video's sub-stride shifts
(:func:`cin_style.inference.video.phase_averaged`) all call it. Plain Python: the ONNX-only
install uses it without PyTorch.
"""

from __future__ import annotations

__all__ = ["centred_pad", "padded_size"]


def padded_size(height: int, width: int, *, multiple: int, min_size: int) -> tuple[int, int]:
    """The size an image of (height, width) is padded to: each side rounded up to ``multiple``, and at least ``min_size``."""
    return tuple(max(min_size, -(-n // multiple) * multiple) for n in (height, width))


def centred_pad(height: int, width: int, *, multiple: int, min_size: int) -> tuple[tuple[int, int, int, int], bool]:
    """``((left, right, top, bottom), reflect)``: the pad that brings (height, width) to
    :func:`padded_size`, split evenly (the extra pixel at the right and bottom), and whether it
    may reflect the image (a reflection pad must be narrower than the side it mirrors; where it
    is not, the edge is repeated).

    From ``min_size`` up the widths are plain modular arithmetic on the size (zero where the
    size is a multiple already), so that a trace of this code (the ONNX export) holds for every size.
    """
    if height >= min_size and width >= min_size:
        ph, pw, reflect = (-height) % multiple, (-width) % multiple, True
    else:
        ph, pw = (n - m for n, m in zip(padded_size(height, width, multiple=multiple, min_size=min_size), (height, width)))
        reflect = ph < height and pw < width
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), reflect
