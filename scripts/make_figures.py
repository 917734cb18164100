"""The README's pictures for masks, strength, colour preservation, exact tiles, steadier video and
strokes at any size.

    pip install "cin-style[figures]"   # scikit-image, for its sample photos
    python scripts/make_figures.py [--model MODEL] [--identity-model MODEL] [--out docs/figures]
        [--added-model ADDED --scratch-model SCRATCH] [--only sizes,masks,...]

The model is the bundled paintings network unless ``--model`` names another; a model with an
identity row also makes the strength picture.

The photos come from scikit-image's sample data (``coffee``: CC0; ``chelsea``: CC0;
``astronaut``: NASA, public domain), so the pictures may ship with the repository; the shared
Kodak photos and paintings are never copied into it. Everything goes through the public API.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cin_style import StyleModel
from cin_style.io.images import save_image, to_pil, to_tensor
from cin_style.io.sheets import contact_sheet
from cin_style.inference.video import flicker, stylize_frames

REPO = Path(__file__).resolve().parents[1]


def sample(name: str) -> Image.Image:
    try:
        import skimage.data
    except ImportError:
        sys.exit('the figures use scikit-image\'s sample photos: pip install "cin-style[figures]"')
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def pick(model: StyleModel, preferred: str, fallback: int) -> str:
    """``preferred`` when the model has it (the bundled model's styles), else its ``fallback``-th painting."""
    paintings = [s for s in model.styles if s != "identity"] or model.styles
    return preferred if preferred in paintings else paintings[fallback % len(paintings)]


def masks_figure(model: StyleModel, out: Path) -> None:
    photo = sample("astronaut").resize((384, 384), Image.Resampling.LANCZOS)
    a, b = pick(model, "hokusai_great_wave", 2), pick(model, "van_gogh_starry_night", 1)
    left = np.zeros((384, 384), np.float32)
    left[:, :192] = 1.0
    ring = np.zeros((384, 384), np.float32)
    yy, xx = np.mgrid[:384, :384]
    ring[(yy - 150) ** 2 + (xx - 200) ** 2 < 110**2] = 1.0
    hard = model.stylize(photo, style=b, masks={a: left})
    soft = model.stylize(photo, style=b, masks={a: left}, feather=96)
    round_mask = model.stylize(photo, style=b, masks={a: ring}, feather=24)
    mask_img = Image.fromarray((left * 200 + 40).astype(np.uint8)).convert("RGB")
    ImageDraw.Draw(mask_img).text((8, 8), f"--mask {a}=...", fill=(0, 0, 0))
    ImageDraw.Draw(mask_img).text((200, 360), f"-s {b}", fill=(255, 255, 255))
    sheet = contact_sheet([[mask_img, hard, soft, round_mask]], labels=[["the mask", "hard edge", "--feather 96", "round mask, --feather 24"]])
    save_image(sheet, out / "masks.jpg", quality=85)


def strength_figure(model: StyleModel, out: Path) -> None:
    photo = sample("chelsea")
    style = pick(model, "van_gogh_starry_night", 0)
    cells = [model.stylize(photo, style=style, strength=s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    save_image(contact_sheet([cells], labels=[[f"strength {s}" for s in ("0", "0.25", "0.5", "0.75", "1")]]), out / "strength.jpg", quality=85)


def color_figure(model: StyleModel, out: Path) -> None:
    photo = sample("coffee").resize((360, 240), Image.Resampling.LANCZOS)
    rows, labels = [], []
    for style in [pick(model, "kandinsky_composition_viii", 0), pick(model, "hokusai_great_wave", 1), pick(model, "renoir_bal_du_moulin_de_la_galette", 2)]:
        rows.append([model.stylize(photo, style=style), model.stylize(photo, style=style, preserve_color=True)])
        labels.append([style, "--preserve-color"])
    save_image(contact_sheet(rows, labels=labels), out / "preserve_color.jpg", quality=85)


def tiles_figure(model: StyleModel, out: Path) -> None:
    """Naive tiles (each normalized on its own) against exact tiles, on a 1024x1024 picture."""
    photo = sample("astronaut").resize((1024, 1024), Image.Resampling.LANCZOS)
    x = to_tensor(photo)[None]
    w = model.weights(pick(model, "van_gogh_starry_night", 2))
    whole = model.stylize_tensor(x, w, stroke="native", tile=0)
    exact = model.stylize_tensor(x, w, stroke="native", tile=256)
    naive = torch.cat(
        [torch.cat([model.stylize_tensor(x[..., r : r + 256, c : c + 256], w, stroke="native", tile=0) for c in range(0, 1024, 256)], dim=-1) for r in range(0, 1024, 256)],
        dim=-2,
    )
    crop = (slice(128, 640), slice(256, 768))  # the centre, where four tiles meet
    psnr = 10 * torch.log10(1 / (exact - whole).square().mean()).item() if not torch.equal(exact, whole) else float("inf")
    cells = [to_pil(t[0][:, crop[0], crop[1]]) for t in (naive, exact, whole)]
    label = "identical" if psnr == float("inf") else f"PSNR {psnr:.1f} dB"
    sheet = contact_sheet([cells], labels=[["naive 256-px tiles (each normalized alone)", f"exact tiles, --tile 256 ({label} vs whole)", "whole image"]])
    save_image(sheet, out / "tiles.jpg", quality=85)


def sizes_figure(model: StyleModel, out: Path, *, display: int = 512) -> None:
    """One photo at 512, 2048 and 4096 px, the network over every pixel (native) against the
    default stroke, each shown at the same display size, and a full-size crop of the 4096 px pair."""
    photo = sample("coffee")  # 600x400, CC0; enlarged, it has no detail of its own past 600 px, but the strokes show the point
    style = pick(model, "van_gogh_starry_night", 0)
    rows: list[list[Image.Image]] = [[], []]
    crops = []
    for side in (512, 2048, 4096):
        big = photo.resize((side, round(side * photo.height / photo.width)), Image.Resampling.LANCZOS)
        for row, stroke in zip(rows, ("native", 1.0)):
            painted = model.stylize(big, style, stroke=stroke)
            row.append(painted.resize((display, round(display * big.height / big.width)), Image.Resampling.LANCZOS))
            if side == 4096:
                crops.append(painted.crop((1400, 900, 1400 + display, 900 + round(display * big.height / big.width))))
    labels = [[f"native, {side} px" for side in (512, 2048, 4096)], [f"default (stroke 1), {side} px" for side in (512, 2048, 4096)]]
    sheet = contact_sheet([rows[0] + [crops[0]], rows[1] + [crops[1]]], labels=[labels[0] + ["native, 4096 px, 1:1 crop"], labels[1] + ["default, 4096 px, 1:1 crop"]])
    save_image(sheet, out / "sizes.jpg", quality=85)


def added_style_figure(added: StyleModel, scratch: StyleModel, out: Path) -> None:
    """A style added to a trained network (convolutions frozen) next to a network trained on it from scratch."""
    style = scratch.styles[0]
    rows, labels = [], []
    for name in ("chelsea", "coffee"):
        photo = sample(name).resize((300, 200), Image.Resampling.LANCZOS)
        rows.append([added.stylize(photo, style=style), scratch.stylize(photo, style=style)])
        labels.append(["added to the 4-style network", "single-style network from scratch"] if not labels else ["", ""])
    save_image(contact_sheet(rows, labels=labels), out / "added_style.jpg", quality=85)


def flicker_figure(model: StyleModel, out: Path) -> dict[str, float]:
    """Consecutive-frame differences of a slow pan, plain and with 16 averaged phases."""
    still = np.asarray(sample("rocket"))
    frames = [still[80:336, 100 + t : 100 + t + 320].copy() for t in range(12)]
    w = model.weights(pick(model, "hokusai_great_wave", 1))
    plain = list(stylize_frames(model, frames, lambda i: w))
    steady = list(stylize_frames(model, frames, lambda i: w, phases=16))
    figures = {"plain": flicker(frames, plain), "steady_16": flicker(frames, steady)}

    def diff(a: np.ndarray, b: np.ndarray) -> Image.Image:
        d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(2)
        return Image.fromarray(np.clip(d * 4, 0, 255).astype(np.uint8)).convert("RGB")

    cells = [Image.fromarray(plain[6]), diff(plain[6], plain[5]), Image.fromarray(steady[6]), diff(steady[6], steady[5])]
    labels = ["frame 6", f"|frame 6 - frame 5| x4, flicker {figures['plain']:.2f}", "--steady 16", f"|frame 6 - frame 5| x4, flicker {figures['steady_16']:.2f}"]
    save_image(contact_sheet([cells], labels=[labels]), out / "flicker.jpg", quality=85)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trained multi-style model (default: the bundled paintings model)")
    parser.add_argument("--identity-model", default=None, help="a model with an identity row (for the strength picture)")
    parser.add_argument("--added-model", default=None, help="a model with a style added by experiment=add_styles")
    parser.add_argument("--scratch-model", default=None, help="a single-style model of that style trained from scratch")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures"))
    parser.add_argument("--only", default=None, help="comma-separated figures to make: masks, color, tiles, flicker, strength, added, sizes (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    wanted = lambda name: only is None or name in only  # noqa: E731
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = StyleModel.load(args.model, device="cpu") if args.model else StyleModel.pretrained(device="cpu")
    for name, figure in (("masks", masks_figure), ("color", color_figure), ("tiles", tiles_figure), ("sizes", sizes_figure)):
        if wanted(name):
            figure(model, out)
    if wanted("flicker"):
        figures = flicker_figure(model, out)
        print(f"flicker on a 1-pixel-per-frame pan: plain {figures['plain']:.3f}, 16 phases {figures['steady_16']:.3f}")
    if wanted("strength") and args.identity_model:
        strength_figure(StyleModel.load(args.identity_model, device="cpu"), out)
    elif wanted("strength") and model.has_identity:
        strength_figure(model, out)
    if wanted("added") and args.added_model and args.scratch_model:
        added_style_figure(StyleModel.load(args.added_model, device="cpu"), StyleModel.load(args.scratch_model, device="cpu"), out)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
