"""How live the studio (``cin-style app``) feels on this machine: the work behind one slider move
at the preview size, and the full-resolution result for a 12-megapixel photo.

    python -m benchmarks.app_latency [--model MODEL] [--engine auto|onnx|torch]

Times :func:`cin_style.app.paint`, the function the page calls (Gradio's own round trip adds
a few milliseconds on localhost): the preview repaints the cached 384-pixel photo; the full
result paints the whole photo (exact tiles above 2 megapixels on a CPU) as "Make the
full-resolution image" does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

# As the cin-style command does (cin_style/cli.py): PyTorch's CPU allocator on huge pages. Set
# before PyTorch is imported, and inherited by every child process, the reference's too.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from PIL import Image

from cin_style.inference.style_model import StyleModel, demo_photo_path
from cin_style.app import PREVIEW_SIZE, paint
from cin_style.io.images import limit_longer_side


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="default: the bundled model")
    p.add_argument("--engine", default="auto", choices=["auto", "onnx", "torch"])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    model = StyleModel.pretrained(device="cpu", engine=args.engine) if args.model is None else StyleModel.load(args.model, device="cpu", engine=args.engine)
    big = Image.open(demo_photo_path()).convert("RGB").resize((4000, 3000), Image.Resampling.LANCZOS)  # 12 megapixels
    small = limit_longer_side(big, PREVIEW_SIZE)
    styles = [s for s in model.styles if s != "identity"]
    paint(model, small, styles[0])  # warm-up
    moves = []
    for i in range(args.repeats):  # a weight slider moved: a new blend each time
        start = time.perf_counter()
        paint(model, small, f"{styles[0]}=1,{styles[1]}={0.1 * (i + 1):.1f}")
        moves.append(time.perf_counter() - start)
    start = time.perf_counter()
    paint(model, big, f"{styles[0]}=0.7,{styles[1]}=0.3")
    full = time.perf_counter() - start
    result = {
        "engine": model.engine.name,
        "preview": f"{small.width}x{small.height}",
        "slider_move_seconds": statistics.median(moves),
        "full_resolution": f"{big.width}x{big.height}",
        "full_resolution_seconds": full,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
