"""Paint at any size: the stroke size, the photo's edges and the speed of large photos.

    python -m benchmarks.strokes [-m MODEL] [--photos DIR] [--styles DIR] [--sizes 2048,4096]
        [--native-sizes 1024,2048] [--native-photos 2] [--speed] [--json OUT.json]

Three measurements, each through the public API (:meth:`cin_style.StyleModel.stylize`):

* **Stroke size.** Every photo is resized (Lanczos) to each of ``--sizes`` on its longer side and
  painted in every style by default (``stroke=1``); the output is scaled back (Lanczos) to a
  shorter side of 256 px and scored with the model's own training loss against its painting
  (:func:`cin_style.quality.evaluate.model_loss`). The reference is the network's output for the same
  photo at a shorter side of 256 px, the size the network was trained and is evaluated at
  (``cin-style evaluate --size 256``). Per style the ratio is the mean style term over the
  photos at that size over the mean at 256 px; the table gives the median over styles (the
  issue's gate: at most 1.3) and the range. The same for ``stroke="native"`` (the network over
  every pixel, today's behaviour before this change) on the first ``--native-photos`` photos,
  as that costs a full-size pass each.
* **Edges.** At full size (every fourth style), the correlation of gradient magnitudes (Sobel on luminance) between
  the output and the photo, for the default output and for a plain Lanczos upscale of the
  network's working-size painting. Higher means the output's edges follow the photo's.
* **Speed** (``--speed``). ``cin-style stylize`` end to end in a fresh process (start, decoding,
  painting, encoding) on a 4K (3840x2160), a 12-megapixel (4243x2828) and a 24-megapixel
  (6000x4000) JPEG made from the first photo, median of three runs, and the process's peak
  resident memory; with ``--native-speed`` one native 12-megapixel run too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from cin_style import StyleModel
from cin_style.io.paintings import find_paintings, load_style_image, recorded_style_size
from cin_style.quality.evaluate import evaluated_styles, model_loss
from cin_style.io.images import find_images, load_image, to_tensor

DATA = Path(os.environ.get("CIN_STYLE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPEED_SIZES = {"4K": (3840, 2160), "12 MP": (4243, 2828), "24 MP": (6000, 4000)}


def resize_longer(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)


def resize_shorter(image: Image.Image, side: int) -> Image.Image:
    scale = side / min(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)


def edge_correlation(image: Image.Image, photo: Image.Image) -> float:
    """Pearson correlation of the Sobel gradient magnitudes of two images' luminance."""

    def magnitude(picture: Image.Image) -> torch.Tensor:
        y = to_tensor(picture.convert("L").convert("RGB"))[:1][None]
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        k = torch.stack([kx, kx.T])[:, None]
        g = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), k)
        return g.square().sum(1).sqrt().flatten().double()

    a, b = magnitude(image), magnitude(photo)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def stroke_tables(
    model: StyleModel, photos: list[Path], paintings: dict[str, Path], sizes: list[int], native_sizes: list[int], native_photos: int, edge_every: int = 4
) -> dict:
    """Style terms per style, size and mode (see the module), and the edge correlations."""
    loss = model_loss(model)
    style_size = recorded_style_size(model.training)
    styles = list(paintings)
    grams = {name: loss.style_grams(load_style_image(paintings[name], style_size)[None].to(model.device)) for name in styles}

    def style_term(image: Image.Image, name: str) -> float:
        x = to_tensor(image)[None].to(model.device)
        with torch.no_grad():
            return float(loss(x, x, style_grams=grams[name]).style)

    terms: dict[str, dict[str, list[float]]] = {name: {} for name in styles}
    edges: dict[str, list[float]] = {}
    for k, path in enumerate(photos):
        photo = load_image(path)
        reference = resize_shorter(photo, 256)
        for name in styles:
            terms[name].setdefault("256", []).append(style_term(model.stylize(reference, name, stroke="native"), name))
        for side in sizes:
            big = resize_longer(photo, side)
            h, w = model.working_size(big.height, big.width, 1.0)
            small = big.resize((w, h), Image.Resampling.BICUBIC)
            for s, name in enumerate(styles):
                out = model.stylize(big, name)
                terms[name].setdefault(f"default {side}", []).append(style_term(resize_shorter(out, 256), name))
                if s % edge_every == 0:  # a full-size Sobel pass each: every few styles
                    plain = model.stylize(small, name).resize(big.size, Image.Resampling.LANCZOS)
                    edges.setdefault(f"default {side}", []).append(edge_correlation(out, big))
                    edges.setdefault(f"lanczos {side}", []).append(edge_correlation(plain, big))
        if k < native_photos:
            for side in native_sizes:
                big = resize_longer(photo, side)
                for name in styles:
                    out = model.stylize(big, name, stroke="native")
                    terms[name].setdefault(f"native {side}", []).append(style_term(resize_shorter(out, 256), name))
                    if k == 0 and name == styles[0]:
                        print(f"  native {side}: first pass done", file=sys.stderr)
        print(f"photo {k + 1}/{len(photos)} {path.name} done", file=sys.stderr)

    ratios: dict[str, dict[str, float]] = {}
    for name in styles:
        for mode, values in terms[name].items():
            if mode == "256":
                continue
            count = len(values)  # the native rows cover the first photos only: the same photos at 256 px
            ratios.setdefault(mode, {})[name] = statistics.fmean(values) / statistics.fmean(terms[name]["256"][:count])
    return {"terms": terms, "ratios": ratios, "edges": edges}


def speed(model_path: str | None, photo: Path, style: str, *, native: bool) -> list[dict]:
    """``cin-style stylize`` end to end on large JPEGs, each run a fresh process."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        image = load_image(photo)
        runs = [(label, size, "1") for label, size in SPEED_SIZES.items()] + ([("12 MP", SPEED_SIZES["12 MP"], "native")] if native else [])
        for label, (w, h), stroke in runs:
            source = Path(folder, f"{w}x{h}.jpg")
            if not source.exists():
                image.resize((w, h), Image.Resampling.LANCZOS).save(source, quality=92)
            command = [sys.executable, "-m", "cin_style.cli", "stylize", str(source), "-s", style, "--stroke", stroke, "-o", str(Path(folder, "out.jpg"))]
            command += ["-m", model_path] if model_path else []
            seconds, peaks = [], []
            for _ in range(3 if stroke != "native" else 1):
                start = time.perf_counter()
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _, status, usage = os.wait4(process.pid, 0)
                seconds.append(time.perf_counter() - start)
                if status != 0:
                    raise RuntimeError(f"{' '.join(command)} failed with status {status}")
                peaks.append(usage.ru_maxrss / 1e6)  # kB -> GB
            rows.append({"photo": label, "size": f"{w}x{h}", "stroke": stroke, "seconds": statistics.median(seconds), "all_seconds": seconds, "peak_gb": max(peaks)})
            print(f"{label} stroke {stroke}: {statistics.median(seconds):.2f} s, {max(peaks):.2f} GB", file=sys.stderr)
    return rows


def markdown(results: dict) -> str:
    lines = []
    if "ratios" in results:
        lines += ["| output (scaled to 256 px) | median style term over the 256 px output's | range over styles |", "|---|---|---|"]
        for mode, per_style in results["ratios"].items():
            values = sorted(per_style.values())
            lines.append(f"| {mode} px | **{statistics.median(values):.2f}** | {values[0]:.2f}-{values[-1]:.2f} |")
        lines += ["", "| full-size output | median correlation of gradient magnitudes with the photo |", "|---|---|"]
        for mode, values in results["edges"].items():
            lines.append(f"| {mode} px | {statistics.median(values):.3f} |")
    if "speed" in results:
        lines += ["", "| photo | stroke | `cin-style stylize` end to end (s) | peak memory (GB) |", "|---|---|---|---|"]
        for row in results["speed"]:
            lines.append(f"| {row['photo']} ({row['size']}) | {row['stroke']} | {row['seconds']:.2f} | {row['peak_gb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default=None, help="model file (default: the bundled model)")
    parser.add_argument("--photos", default=str(DATA / "content" / "val"), help="photos (default: the Kodak set)")
    parser.add_argument("--styles", default=str(DATA / "styles"), help="the paintings the model was trained on")
    parser.add_argument("--sizes", default="2048,4096", help="longer sides of the default outputs")
    parser.add_argument("--native-sizes", default="1024,2048", help="longer sides of the native outputs")
    parser.add_argument("--native-photos", type=int, default=2, help="photos for the native rows (each a full-size pass per style)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--only-styles", default=None, help="comma-separated styles (default: all)")
    parser.add_argument("--speed", action="store_true", help="also time cin-style stylize on 4K, 12 and 24 megapixels")
    parser.add_argument("--native-speed", action="store_true", help="with --speed, one native 12-megapixel run too (minutes)")
    parser.add_argument("--skip-quality", action="store_true", help="only the speed rows")
    parser.add_argument("--json", default=None, help="write the figures here (and a .md table beside it)")
    args = parser.parse_args(argv)

    model = StyleModel.load(args.model, device="cpu") if args.model else StyleModel.pretrained(device="cpu")
    photos = find_images(args.photos)[: args.limit]
    names = args.only_styles.split(",") if args.only_styles else evaluated_styles(model.styles)
    results: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
                     "model": args.model or "bundled", "photos": [p.name for p in photos]}  # fmt: skip
    if not args.skip_quality:
        paintings = find_paintings(args.styles, names, model.training.get("style_files"))
        sizes = [int(s) for s in args.sizes.split(",") if s]
        native = [int(s) for s in args.native_sizes.split(",") if s]
        results.update(stroke_tables(model, photos, paintings, sizes, native, args.native_photos))
    if args.speed:
        results["speed"] = speed(args.model, photos[0], names[0], native=args.native_speed)
    table = markdown(results)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        Path(args.json).with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
