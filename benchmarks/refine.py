"""Refining stills: the network's painting plus a few optimization steps, against Gatys et al.

    python -m benchmarks.refine [-m MODEL] [--photos DIR] [--styles DIR] [--steps 30]
        [--timing 3] [--limit N] [--curve-side 1024 [--curve-steps K]] [--cache benchmarks/optimized] [--json OUT.json]

For every style, on the photo the bundled model's optimization gate uses for it (Kodak, centre
crop at 256 px, :func:`cin_style.quality.evaluate.optimized_photos`): the total loss of the network's
output, of that output refined by ``--steps`` L-BFGS steps (``cin-style stylize --refine``, which
is :func:`cin_style.losses.optimize.optimize_images` with the network's output as its start), and of
100 steps of Gatys et al. from the photo (the gate's figures, from ``--cache`` where they are,
as ``cin-style evaluate --optimize-cache`` keeps them). The time of the refinement is measured on
every pair, the time of Gatys-100 on the first ``--timing`` pairs. Loss curves: the refinement's
total after every step at 256 px and, for the first style, at ``--curve-side`` px (the photo's
longer side, painted natively), with Gatys-100's curve at 256 px beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from cin_style import StyleModel
from cin_style.io.paintings import find_paintings, load_center_crops, load_style_image, recorded_style_size
from cin_style.quality.evaluate import OptimizedCache, evaluated_styles, model_loss, optimized_photos
from cin_style.io.images import find_images, load_image, to_tensor
from cin_style.losses.optimize import optimize_images

DATA = Path(os.environ.get("CIN_STYLE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REPO = Path(__file__).resolve().parents[1]


def optimize(photo, loss, grams, steps, init="content"):
    """(final totals per image, loss curve, seconds) of ``steps`` L-BFGS steps."""
    start = time.perf_counter()
    result = optimize_images(photo, loss=loss, style_grams=grams, steps=steps, init=init)
    return result.terms.total.tolist(), [h["total"] for h in result.history], time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default=None, help="model file (default: the bundled model)")
    parser.add_argument("--photos", default=str(DATA / "content" / "val"))
    parser.add_argument("--styles", default=str(DATA / "styles"))
    parser.add_argument("--steps", type=int, default=30, help="refinement steps (default 30)")
    parser.add_argument("--timing", type=int, default=3, help="pairs on which Gatys-100 is timed (default 3)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N styles")
    parser.add_argument("--curve-steps", type=int, default=None, help="steps of the large curve (default: --steps)")
    parser.add_argument("--curve-side", type=int, default=1024, help="the longer side of the large curve's photo (0: none)")
    parser.add_argument("--cache", default=str(REPO / "benchmarks" / "optimized"), help="Gatys-100 figures kept by cin-style evaluate")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)

    model = StyleModel.load(args.model, device="cpu", engine="torch") if args.model else StyleModel.pretrained(device="cpu", engine="torch")
    loss = model_loss(model)
    styles = evaluated_styles(model.styles)[: args.limit]
    files = find_images(args.photos)
    photos = load_center_crops(files, 256)
    paintings = find_paintings(args.styles, styles, model.training.get("style_files"))
    style_size = recorded_style_size(model.training)
    cache = OptimizedCache(args.cache)
    rows, curves = [], {}
    for index, name in enumerate(styles):
        photo = photos[optimized_photos(index, 1, len(files))]
        grams = loss.style_grams(load_style_image(paintings[name], style_size)[None])
        painted = model.stylize_tensor(photo, model.weights(name), stroke="native")
        with torch.no_grad():
            network = float(loss(painted, photo, style_grams=grams).total)
        (refined,), curve, refine_s = optimize(photo, loss, grams, args.steps, init=painted)
        found = cache.get(cache.key(photo, grams, loss, steps=100, method="lbfgs"))
        gatys_s = None
        if found is None or index < args.timing:
            (gatys,), gatys_curve, gatys_s = optimize(photo, loss, grams, 100)
            if index == 0:
                curves["gatys_100_256"] = gatys_curve
        else:
            gatys = found[0]["total"]
        if index == 0:
            curves[f"refine_{args.steps}_256"] = [network, *curve]
        rows.append({"style": name, "photo": files[optimized_photos(index, 1, len(files))[0]].name, "network": network, "refined": refined, "gatys_100": gatys,
                     "refined_over_gatys": refined / gatys, "network_over_gatys": network / gatys, "refine_s": refine_s, "gatys_s": gatys_s})  # fmt: skip
        print(f"{name}: network {network:.3f}, refined {refined:.3f}, Gatys-100 {gatys:.3f} ({refine_s:.1f} s" + (f", Gatys {gatys_s:.1f} s)" if gatys_s else ")"), file=sys.stderr)
    if args.curve_side:
        name = styles[0]
        big = load_image(files[optimized_photos(0, 1, len(files))[0]])
        scale = args.curve_side / max(big.size)
        big = big.resize((round(big.width * scale), round(big.height * scale)))
        x = to_tensor(big)[None]
        grams = loss.style_grams(load_style_image(paintings[name], style_size)[None])
        painted = model.stylize_tensor(x, model.weights(name), stroke="native")
        with torch.no_grad():
            network = float(loss(painted, x, style_grams=grams).total)
        steps = args.curve_steps or args.steps
        _, curve, seconds = optimize(x, loss, grams, steps, init=painted)
        curves[f"refine_{steps}_{args.curve_side}"] = [network, *curve]
        curves[f"refine_{steps}_{args.curve_side}_seconds"] = seconds

    timed = [r for r in rows if r["gatys_s"]]
    summary = {
        "pairs": len(rows),
        "median_refined_over_gatys": statistics.median(r["refined_over_gatys"] for r in rows),
        "median_network_over_gatys": statistics.median(r["network_over_gatys"] for r in rows),
        "at_or_below_gatys": sum(r["refined"] <= r["gatys_100"] for r in rows),
        "median_refine_s": statistics.median(r["refine_s"] for r in rows),
        "median_gatys_s": statistics.median(r["gatys_s"] for r in timed) if timed else None,
    }
    lines = [f"| style | network | refined ({args.steps}) | Gatys-100 | refined / Gatys |", "|---|---|---|---|---|"]
    lines += [f"| {r['style']} | {r['network']:.2f} | {r['refined']:.2f} | {r['gatys_100']:.2f} | {r['refined_over_gatys']:.2f} |" for r in rows]
    lines += ["", f"median refined / Gatys-100: **{summary['median_refined_over_gatys']:.2f}** (network alone {summary['median_network_over_gatys']:.2f}); "
              f"at or below Gatys-100 on {summary['at_or_below_gatys']} of {len(rows)}; refinement {summary['median_refine_s']:.1f} s, "
              f"Gatys-100 {summary['median_gatys_s']:.1f} s (median of {len(timed)})"]  # fmt: skip
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": args.steps, "rows": rows, "summary": summary, "curves": curves}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
