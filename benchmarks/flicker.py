"""Flicker of stylized video, with and without the --steady remedy.

    python -m benchmarks.flicker -m MODEL [--photo PATH] [--frames 24] [--json flicker.json]

Two synthetic clips made from one still photo, so that the input motion is known exactly:

* pan: a 320x256 window moving one pixel per frame across the photo (camera motion);
* jitter: the same window standing still, with sensor noise (sigma 4/255) and a global
  brightness change (sigma 3/255) per frame.

Flicker = mean absolute difference between consecutive output frames / the same for the
input frames (``cin_style.video.flicker``). Each row also gives the seconds per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def clips(photo_path: str, frames: int) -> dict[str, list[np.ndarray]]:
    from cin_style.images import load_image

    still = np.asarray(load_image(photo_path).resize((576, 384)))
    pan = [still[64:320, 40 + t : 360 + t].copy() for t in range(frames)]
    rng = np.random.default_rng(0)
    base = still[64:320, 40:360].astype(np.float32)
    jitter = [np.clip(base + rng.normal(0, 4, base.shape) + rng.normal(0, 3), 0, 255).astype(np.uint8) for _ in range(frames)]
    return {"pan": pan, "jitter": jitter}


def main(argv: list[str] | None = None) -> int:
    from cin_style import StyleModel
    from cin_style.video import flicker, stylize_frames

    default_photo = Path(os.environ.get("CIN_STYLE_DATA", "../shared/data")) / "content" / "val" / "kodim23.jpg"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--style", default="0", help="style name or index (default: the first)")
    parser.add_argument("--photo", default=str(default_photo))
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    model = StyleModel.load(args.model)
    w = model.weights(args.style)
    results = []
    for clip, frames in clips(args.photo, args.frames).items():
        for phases in (1, 4, 16):
            start = time.perf_counter()
            out = list(stylize_frames(model, frames, lambda i: w, phases=phases))
            seconds = (time.perf_counter() - start) / len(frames)
            results.append({"clip": clip, "steady": phases, "flicker": flicker(frames, out), "seconds_per_frame": seconds})
    print(f"| clip | --steady | flicker | s/frame ({model.device}) |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['clip']} | {r['steady']} | {r['flicker']:.3f} | {r['seconds_per_frame']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "frames": args.frames, "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
