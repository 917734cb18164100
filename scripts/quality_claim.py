"""Reproduce the CIN paper's claim: one N-style network is as good as N single-style networks.

    python scripts/quality_claim.py [--steps 300] [--out runs/quality_claim] [--stage all|train|evaluate|report]

Trains one network on N styles and N single-style networks, each for the same number of steps
on the same photos with the same settings, exports them, evaluates every network with
``cin-style evaluate`` on the held-out Kodak photos (the training loss definitions, at a fixed
size), and writes ``docs/quality.md``: per style, the ratio of the N-style network's total loss
to the single-style network's (the claim holds if every ratio is at most 1.10), and contact
sheets. Everything goes through the command line, exactly as a user would run it; stages that
already have their outputs are skipped, so an interrupted run can be continued.

The default setting (N = 4, 128 px crops, batch 4, CPU) is the reduced one the issue allows
when no GPU is at hand; pass --steps, --image-size, --batch-size and --accelerator for more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STYLES = ["hokusai_great_wave", "van_gogh_starry_night", "kandinsky_composition_viii", "durer_lion"]
CLI = [sys.executable, "-m", "cin_style.cli"]


def run(*args: str, log: Path) -> None:
    print("$ cin-style " + " ".join(args), flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([*CLI, *args], stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"failed after {time.perf_counter() - start:.0f} s; see {log}")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def common_overrides(args, data_root: Path) -> list[str]:
    return [
        f"data_root={data_root}",
        f"data.image_size={args.image_size}",
        "data.style_size=256",
        f"data.batch_size={args.batch_size}",
        "data.num_workers=0",
        "data.num_val=4",
        f"trainer.max_steps={args.steps}",
        f"trainer.accelerator={args.accelerator}",
        "trainer.precision=32-true",
        f"trainer.val_check_interval={args.steps}",
        f"checkpoint_every={args.steps}",
        "trainer.enable_progress_bar=false",
        "model.style_sampling=cycle",
        "seed=0",
    ]


def networks() -> dict[str, list[str]]:
    """Run name -> the overrides that pick its styles."""
    styles = ",".join(f"{{name:{s},path:'${{data_root}}/styles/{s}.jpg'}}" for s in STYLES)
    nets = {"multi": [f"data.styles=[{styles}]", "data.style_dir=null", "name=quality_multi"]}
    for s in STYLES:
        nets[f"single_{s}"] = ["experiment=single_style", f"style={s}", f"name=quality_single_{s}"]
    return nets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--eval-size", type=int, default=256)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--data-root", default=os.environ.get("CIN_STYLE_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(REPO / "runs" / "quality_claim"))
    parser.add_argument("--stage", choices=["all", "train", "evaluate", "report"], default="all")
    args = parser.parse_args()
    out, data_root = Path(args.out).resolve(), Path(args.data_root).resolve()
    out.mkdir(parents=True, exist_ok=True)
    nets = networks()

    if args.stage in ("all", "train"):
        for name, overrides in nets.items():
            model = out / f"{name}.safetensors"
            if model.exists():
                continue
            run_dir = out / "runs" / name
            run("train", *overrides, *common_overrides(args, data_root), f"hydra.run.dir={run_dir}", log=out / f"{name}.train.log")
            run("export", str(run_dir / "checkpoints" / "last.ckpt"), "-o", str(model), log=out / f"{name}.export.log")

    if args.stage in ("all", "evaluate"):
        for name in nets:
            report = out / f"{name}.json"
            if report.exists():
                continue
            run(
                "evaluate", "-m", str(out / f"{name}.safetensors"), "--content", str(data_root / "content" / "val"),
                "--style-images", str(data_root / "styles"), "--size", str(args.eval_size), "--json", str(report),
                log=out / f"{name}.evaluate.log",
            )  # fmt: skip

    if args.stage in ("all", "report"):
        write_report(args, out)
    return 0


def comparison_sheet(out: Path, folder: Path) -> str:
    """Each style by the N-style network and by its single-style network, on photos the project may ship.

    The losses above come from the Kodak photos, whose licence is not verified, so they are not
    copied into the repository; the pictures use scikit-image's CC0 sample photos instead.
    """
    try:
        import skimage.data
    except ImportError:
        return "(Install scikit-image, `pip install \"cin-style[figures]\"`, to get the comparison picture.)"
    from PIL import Image

    from cin_style import StyleModel
    from cin_style.io.images import save_image
    from cin_style.io.sheets import contact_sheet

    photos = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("chelsea", "coffee")]
    photos = [p.resize((240, round(240 * p.height / p.width)), Image.Resampling.LANCZOS) for p in photos]
    multi = StyleModel.load(out / "multi.safetensors", device="cpu")
    rows, labels = [], []
    for s in STYLES:
        single = StyleModel.load(out / f"single_{s}.safetensors", device="cpu")
        rows.append([img for p in photos for img in (multi.stylize(p, style=s), single.stylize(p, style=s))])
        labels.append([f"{s}: N-style", "single-style"] * len(photos))
    folder.mkdir(parents=True, exist_ok=True)
    save_image(contact_sheet(rows, labels=labels), folder / "comparison.jpg", quality=85)
    return (
        "Each style by the N-style network and by its single-style network (scikit-image's CC0 sample\n"
        "photos; the Kodak photos behind the table are not copied into the repository):\n\n"
        "![N-style against single-style networks](quality/comparison.jpg)"
    )


def write_report(args, out: Path) -> None:
    multi = json.loads((out / "multi.json").read_text())
    rows, ok = [], True
    for s in STYLES:
        single = json.loads((out / f"single_{s}.json").read_text())["styles"][s]
        m = multi["styles"][s]
        ratio = m["total"] / single["total"]
        ok &= ratio <= 1.10
        rows.append(
            f"| {s} | {m['content']:.3f} | {m['style']:.3f} | {m['total']:.3f} | {single['content']:.3f} | "
            f"{single['style']:.3f} | {single['total']:.3f} | **{ratio:.3f}** |"
        )
    docs = REPO / "docs"
    picture = comparison_sheet(out, docs / "quality")
    text = f"""# Quality: one N-style network against N single-style networks

Dumoulin et al. (2017) report that one network with conditional instance normalization,
trained on N styles, stylizes as well as N networks trained on one style each. This page
checks that claim with cin-style's own losses.

**Setting** (reduced, for a 2-core CPU; no GPU was available): N = {len(STYLES)} paintings,
{args.steps} steps for every network, {args.image_size} px crops of the training photos, batch
{args.batch_size}, Adam 1e-3, styles in turn (`model.style_sampling=cycle`), seed 0, float32. The
N-style network therefore sees each style in a quarter of its samples, the single-style
networks in all of theirs: same steps, same photos, as the claim is stated. Evaluation:
`cin-style evaluate` on the {multi['num_photos']} Kodak photos (held out from training),
shorter side {multi['size']} px and centre crop, the training loss definitions (content
weight {multi['loss']['content_weight']}, style weight {multi['loss']['style_weight']}), mean over photos.

Command: `python scripts/quality_claim.py --steps {args.steps} --image-size {args.image_size} --batch-size {args.batch_size}`

| style | N-style content | N-style style | N-style total | single content | single style | single total | ratio N-style / single |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

**Result: the claim {"holds" if ok else "does not hold"} in this setting** (every ratio at most 1.10: {"yes" if ok else "no"}).
{"" if ok else "With this few steps the shared network has had a quarter of the per-style updates of each single-style network; the paper trains for 40,000 steps. The figure to watch is how the ratio moves as --steps grows; a GPU run of the full schedule is the real test."}

{picture}
"""
    (docs / "quality.md").write_text(text)
    print(f"wrote {docs / 'quality.md'}")


if __name__ == "__main__":
    sys.exit(main())
