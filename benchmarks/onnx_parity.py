"""onnxruntime against PyTorch on real photos: PSNR of the 8-bit outputs, the figures of docs/onnx.md.

    python -m benchmarks.onnx_parity --onnx paintings.onnx [--model cin_style/models/paintings.safetensors] --photo PHOTO
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image

from cin_style.inference.style_model import StyleModel, pretrained_path
from cin_style.inference.onnx_model import OnnxStyleModel

SIZES = [(256, 256), (257, 383), (1024, 768)]
STYLES = ["hokusai_great_wave", "hokusai_great_wave=0.5,van_gogh_starry_night=0.3,durer_lion=0.2"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True)
    p.add_argument("--model", default=str(pretrained_path()))
    p.add_argument("--photo", required=True)
    args = p.parse_args(argv)
    reference = StyleModel.load(args.model, device="cpu", engine="torch")
    ours = OnnxStyleModel.load(args.onnx)
    photo = Image.open(args.photo).convert("RGB")
    print("| size (W x H) | style | PSNR (dB) | largest difference (8-bit levels) | pixels that differ |")
    print("|---|---|---|---|---|")
    for size in SIZES:
        image = photo.resize(size, Image.Resampling.LANCZOS)
        for style in STYLES:
            a = np.asarray(ours.stylize(image, style), np.float64)
            b = np.asarray(reference.stylize(image, style, tile=0), np.float64)
            mse = float(((a - b) ** 2).mean())
            psnr = "identical" if mse == 0 else f"{10 * np.log10(255**2 / mse):.1f}"
            kind = "one style" if "," not in style else "three-style blend"
            print(f"| {size[0]}x{size[1]} | {kind} | {psnr} | {np.abs(a - b).max():.0f} | {100 * (a != b).any(-1).mean():.3f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
