"""Measure the strength dial and adding styles, on top of a trained multi-style model.

    python scripts/looks_experiments.py --base runs/quality_claim/multi.safetensors [--steps 300]
    python scripts/looks_experiments.py --strength-of cin_style/models/paintings.safetensors [--style NAME]

1. Strength dial: adds an identity row to the base model with ``experiment=add_styles
   'new_styles=[identity]'`` (only the new row is trained), then on the held-out Kodak photos
   measures the PSNR of strength 0 against the photo and the style loss of one style at
   strengths 0, 0.25, 0.5, 0.75 and 1 (it should fall monotonically).
2. Adding a style: trains a new painting into the base model for K steps (its rows and convs
   frozen) and, for comparison, a single-style network from scratch for the same K steps; both
   are evaluated with ``cin-style evaluate`` on the new style.

Everything runs through the command line and the public API; the tables are printed and
written to ``docs/looks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cin_style.cli"]
NEW_STYLE = "hiroshige_benzaiten_shrine_in_snow"


def run(*args: str, log: Path) -> None:
    print("$ cin-style " + " ".join(args), flush=True)
    with open(log, "w") as f:
        if subprocess.run([*CLI, *args], stdout=f, stderr=subprocess.STDOUT, cwd=REPO).returncode:
            sys.exit(f"failed; see {log}")


def train_overrides(args, data_root: Path) -> list[str]:
    return [
        f"data_root={data_root}", f"data.image_size={args.image_size}", f"data.batch_size={args.batch_size}", "data.num_workers=0",
        "data.num_val=4", f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}", f"checkpoint_every={args.steps}",
        "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.enable_progress_bar=false", "seed=0",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="a trained multi-style model file")
    parser.add_argument("--strength-of", help="only measure the strength dial of this model (it has an identity row); print the table and write it beside --out")
    parser.add_argument("--style", default=None, help="the style of the strength table (default: the model's first)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--photos", type=int, default=8, help="Kodak photos for the strength measurement")
    parser.add_argument("--data-root", default=os.environ.get("CIN_STYLE_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(REPO / "runs" / "looks"))
    args = parser.parse_args()
    out, data_root = Path(args.out).resolve(), Path(args.data_root).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.strength_of:
        table = strength_table(Path(args.strength_of), data_root, args.photos, args.style)
        (out / "strength.json").write_text(json.dumps({"model": args.strength_of, **table}, indent=2) + "\n")
        return 0
    if not args.base:
        parser.error("give --base MODEL (or --strength-of MODEL)")
    base = Path(args.base).resolve()
    common = train_overrides(args, data_root)
    jobs = {
        "identity": ["experiment=add_styles", f"base_model={base}", "new_styles=[identity]", "name=looks_identity"],
        "added": ["experiment=add_styles", f"base_model={base}", f"new_styles=[{NEW_STYLE}]", "name=looks_added"],
        "scratch": ["experiment=single_style", f"style={NEW_STYLE}", "name=looks_scratch", "model.style_sampling=cycle"],
    }
    for name, overrides in jobs.items():
        model = out / f"{name}.safetensors"
        if not model.exists():
            run("train", *overrides, *common, f"hydra.run.dir={out / 'runs' / name}", log=out / f"{name}.train.log")
            run("export", str(out / "runs" / name / "checkpoints" / "last.ckpt"), "-o", str(model), log=out / f"{name}.export.log")
    for name in ("added", "scratch"):
        report = out / f"{name}.json"
        if not report.exists():
            run(
                "evaluate", "-m", str(out / f"{name}.safetensors"), "--content", str(data_root / "content" / "val"),
                "--style-images", str(data_root / "styles"), "--size", "256", "--json", str(report), log=out / f"{name}.evaluate.log",
            )  # fmt: skip

    results = {"setting": vars(args) | {"new_style": NEW_STYLE}, "strength": strength_table(out / "identity.safetensors", data_root, args.photos)}
    added = json.loads((out / "added.json").read_text())["styles"][NEW_STYLE]
    scratch = json.loads((out / "scratch.json").read_text())["styles"][NEW_STYLE]
    results["add_style"] = {"added": added, "scratch": scratch, "ratio_total": added["total"] / scratch["total"]}
    print(f"\nadding {NEW_STYLE} for {args.steps} steps: total {added['total']:.3f} (content {added['content']:.3f}, style {added['style']:.3f}); "
          f"from scratch: {scratch['total']:.3f} (content {scratch['content']:.3f}, style {scratch['style']:.3f}); ratio {results['add_style']['ratio_total']:.3f}")
    (REPO / "docs" / "looks.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


@torch.no_grad()
def strength_table(model_path: Path, data_root: Path, photos: int, style: str | None = None) -> dict:
    from cin_style import StyleModel
    from cin_style.io.paintings import load_center_crops, load_style_image
    from cin_style.io.images import find_images
    from cin_style.io.paintings import recorded_style_size
    from cin_style.quality.evaluate import model_loss

    model = StyleModel.load(model_path, device="cpu")
    files = find_images(data_root / "content" / "val")[:photos]
    x = load_center_crops(files, 256)
    style = style or model.styles[0]
    loss = model_loss(model)
    grams = loss.style_grams(load_style_image(data_root / "styles" / f"{style}.jpg", recorded_style_size(model.training))[None])
    rows = []
    for strength in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = model.stylize_tensor(x, model.weights(style, strength=strength))
        mse = (y - x).square().flatten(1).mean(1)
        psnr = float((10 * torch.log10(1 / mse)).mean())
        rows.append({"strength": strength, "psnr_vs_photo_db": psnr, "style_loss": float(loss(y, x, style_grams=grams).style.mean())})
        print(f"strength {strength:.2f}: PSNR against the photo {psnr:.2f} dB, {style} style loss {rows[-1]['style_loss']:.3f}", flush=True)
    monotone = all(b["style_loss"] < a["style_loss"] for a, b in zip(rows, rows[1:]))
    return {"style": style, "photos": len(files), "rows": rows, "style_loss_falls_monotonically": monotone}


if __name__ == "__main__":
    sys.exit(main())
