"""Flicker of stylized video: the frame-difference ratio and the warping error of Lai et al. (2018).

    python -m benchmarks.flicker -m MODEL [-m OTHER_MODEL ...] [--steady 1,4] [--frames 24]
        [--scale 4 --stroke native,1] [--json flicker.json] [--animation before_after.webp]

Clips, all made from one still photo so that anyone can rebuild them exactly (default: Kodak's
kodim23, resized to 576x384; ``--photo`` to change):

* **pan**: a 320x256 window moving one pixel per frame to the right (camera motion; the motion
  crosses the network's stride-4 sampling grid, the main cause of flicker);
* **zoom**: a window shrinking by 1% per frame around the centre, resized back to 320x256
  (bilinear), a slow push-in;
* **jitter**: the window standing still, with sensor noise (sigma 4/255) and a global brightness
  change (sigma 3/255) per frame.

``--scale K`` enlarges every clip K times (Lanczos): the same motion in the picture at K times the
frame size, where ``--stroke`` (comma-separated settings, default 1) decides whether the network
paints at the working size (:mod:`cin_style.inference.strokes`) or over every pixel (``native``).

Metrics per clip, model, stroke and ``--steady`` setting:

* **flicker**: mean absolute difference of consecutive output frames over the same for the input
  frames (``cin_style.inference.video.flicker``; 1 = no more change than the input);
* **warping error**: Lai et al.'s temporal metric (``cin_style.inference.video.warping_error``): the previous
  output warped by the input's optical flow (OpenCV DIS), mean squared difference to the current
  output over non-occluded pixels;
* **style loss** of the output frames against the style's painting, with the model's own loss
  settings: a network can be steady by painting weakly, and this column shows it;
* seconds per frame.

``--animation`` writes an animated WebP of the pan clip: the photo, then each model's output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SIZE = (320, 256)


def clips(photo_path: str, frames: int, enlarge: int = 1) -> dict[str, list[np.ndarray]]:
    from PIL import Image

    from cin_style.io.images import load_image

    photo = load_image(photo_path).resize((576, 384), Image.Resampling.LANCZOS)
    still = np.asarray(photo)
    w, h = SIZE
    pan = [still[64 : 64 + h, 40 + t : 40 + t + w].copy() for t in range(frames)]
    zoom = []
    for t in range(frames):
        scale = 0.99**t
        cw, ch = w * scale, h * scale
        cx, cy = 40 + w / 2, 64 + h / 2
        box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
        zoom.append(np.asarray(photo.resize(SIZE, Image.Resampling.BILINEAR, box=box)))
    rng = np.random.default_rng(0)
    base = still[64 : 64 + h, 40 : 40 + w].astype(np.float32)
    jitter = [np.clip(base + rng.normal(0, 4, base.shape) + rng.normal(0, 3), 0, 255).astype(np.uint8) for _ in range(frames)]
    made = {"pan": pan, "zoom": zoom, "jitter": jitter}
    if enlarge != 1:
        size = (w * enlarge, h * enlarge)
        made = {name: [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.LANCZOS)) for f in frames_] for name, frames_ in made.items()}
    return made


def style_loss_of(model, style: str, frames: list[np.ndarray], data_root: Path) -> float | None:
    """Mean style loss of ``frames`` against the style's painting, with the model's training settings."""
    import torch

    from cin_style.io.paintings import find_paintings, load_style_image, recorded_style_size
    from cin_style.quality.evaluate import model_loss

    try:
        painting = find_paintings(data_root / "styles", [style], model.training.get("style_files"))[style]
    except FileNotFoundError:
        return None
    loss = model_loss(model)
    grams = loss.style_grams(load_style_image(painting, recorded_style_size(model.training))[None].to(model.device))
    batch = torch.from_numpy(np.stack(frames[::4])).permute(0, 3, 1, 2).float().div(255).to(model.device)
    with torch.no_grad():
        return float(loss(batch, batch, style_grams=grams).style.mean())


def write_animation(path: Path, columns: list[list[np.ndarray]], labels: list[str]) -> None:
    """Frames side by side (one column per clip), as an animated WebP or GIF by the suffix."""
    from PIL import Image, ImageDraw

    pictures = []
    for row in zip(*columns):
        strip = Image.fromarray(np.concatenate(row, axis=1))
        draw = ImageDraw.Draw(strip)
        for i, label in enumerate(labels):
            draw.rectangle((i * SIZE[0], 0, i * SIZE[0] + 7 * len(label) + 8, 16), fill=(0, 0, 0))
            draw.text((i * SIZE[0] + 4, 2), label, fill=(255, 255, 255))
        pictures.append(strip)
    kwargs = {"lossless": False, "quality": 80} if path.suffix.lower() == ".webp" else {}
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=83, loop=0, **kwargs)


def short_names(paths: list[str]) -> list[str]:
    """The shortest trailing parts of each path (without the suffix) that tell the models apart:
    ``runs/a/model.safetensors`` and ``runs/b/model.safetensors`` become ``a/model`` and ``b/model``."""
    parts = [Path(p).with_suffix("").parts for p in paths]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def main(argv: list[str] | None = None) -> int:
    from cin_style import StyleModel
    from cin_style.inference.video import flicker, stylize_frames, warping_error

    data_root = Path(os.environ.get("CIN_STYLE_DATA", "../shared/data"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", action="append", required=True, help="a model file; repeat to compare models (e.g. without and with the stability term)")
    parser.add_argument("--label", action="append", default=None, help="a name for each -m in tables and the animation (default: the shortest distinct path tail)")
    parser.add_argument("--style", default=None, help="style name (default: the models' first style)")
    parser.add_argument("--photo", default=str(data_root / "content" / "val" / "kodim23.jpg"))
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--steady", default="1,4", help="comma-separated --steady settings to measure (1 = plain frames)")
    parser.add_argument("--scale", type=int, default=1, help="enlarge every clip K times (Lanczos), default 1 (320x256)")
    parser.add_argument("--stroke", default="1", help="comma-separated stroke settings to measure: numbers or native (default 1)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--animation", default=None, help="write the pan clip and each model's output (plain frames) as .webp or .gif")
    args = parser.parse_args(argv)
    if args.label is not None and len(args.label) != len(args.model):
        parser.error(f"give one --label per -m ({len(args.model)}), got {len(args.label)}")
    made = clips(args.photo, args.frames, args.scale)
    strokes = [s if s == "native" else float(s) for s in args.stroke.split(",")]
    results, pan_outputs, labels = [], [], []
    names = dict(zip(args.model, args.label or short_names(args.model)))
    for path in args.model:
        model = StyleModel.load(path)
        style = args.style or next(s for s in model.styles if s != "identity")
        w = model.weights(style)
        for clip, frames in made.items():
            for stroke, phases in ((s, int(p)) for s in strokes for p in args.steady.split(",")):
                start = time.perf_counter()
                out = list(stylize_frames(model, frames, lambda i: w, phases=phases, stroke=stroke))
                seconds = (time.perf_counter() - start) / len(frames)
                if clip == "pan" and phases == 1 and stroke == strokes[0]:
                    pan_outputs.append(out)
                    labels.append(names[path])
                results.append({
                    "model": path, "style": style, "clip": clip, "stroke": stroke, "steady": phases, "flicker": flicker(frames, out),
                    "warping_error": warping_error(frames, out), "style_loss": style_loss_of(model, style, out, data_root),
                    "seconds_per_frame": seconds,
                })  # fmt: skip
    print(f"| model | clip | --stroke | --steady | flicker | warping error | style loss | s/frame ({model.device}) |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        loss = f"{r['style_loss']:.3f}" if r["style_loss"] is not None else "-"
        stroke = "native" if r["stroke"] == "native" else f"{r['stroke']:g}"
        print(f"| {names[r['model']]} | {r['clip']} | {stroke} | {r['steady']} | {r['flicker']:.3f} | {r['warping_error']:.5f} | {loss} | {r['seconds_per_frame']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"photo": args.photo, "frames": args.frames, "scale": args.scale, "rows": results}, indent=2) + "\n")
    if args.animation:
        write_animation(Path(args.animation), [made["pan"], *pan_outputs], ["photo", *labels])
        print(f"wrote {args.animation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
