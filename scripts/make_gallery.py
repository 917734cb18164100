"""The README gallery, made from the bundled model (or any model) with photos the project may ship.

    python scripts/make_gallery.py [-m MODEL] [--out docs/gallery]

Photos: scikit-image's sample photos when it is installed (``pip install "cin-style[figures]"``:
astronaut, public domain; chelsea and coffee, CC0), else the bundled demo photo alone; nothing is
downloaded. Writes ``styles.jpg`` (each photo, then every style of the model, in rows of
``--columns``), ``blend_strip.jpg`` (two styles) and ``grid4.jpg`` (the CIN paper's four-style grid).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from cin_style import StyleModel
from cin_style.inference.style_model import demo_photo_path
from cin_style.io.images import load_image, save_image
from cin_style.io.sheets import contact_sheet
from cin_style.network.styles import IDENTITY

REPO = Path(__file__).resolve().parents[1]


def photos() -> list[Image.Image]:
    try:
        import skimage.data
    except ImportError:
        print("scikit-image not installed: using the bundled demo photo only")
        return [load_image(demo_photo_path())]
    return [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in ("astronaut", "chelsea", "coffee")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default=None, help="default: the bundled model (StyleModel.pretrained())")
    parser.add_argument("--styles", type=int, default=0, help="how many styles the sheet shows (0: every style)")
    parser.add_argument("--columns", type=int, default=7, help="cells per row of the sheet")
    parser.add_argument("--cell", type=int, default=224, help="width of each cell in pixels")
    parser.add_argument("--out", default=str(REPO / "docs" / "gallery"))
    args = parser.parse_args()
    model = StyleModel.load(args.model) if args.model else StyleModel.pretrained()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    styles = [s for s in model.styles if s != IDENTITY]
    count = args.styles or len(styles)
    chosen = styles[:: max(1, len(styles) // count)][:count]
    pics = [p.resize((args.cell, round(args.cell * p.height / p.width)), Image.Resampling.LANCZOS) for p in photos()]
    rows, labels = [], []
    for p in pics:
        cells = [p, *(model.stylize(p, style=s) for s in chosen)]
        names = ["photo", *chosen]
        for i in range(0, len(cells), args.columns):
            rows.append(cells[i : i + args.columns])
            labels.append(names[i : i + args.columns])
    save_image(contact_sheet(rows, labels=labels), out / "styles.jpg", quality=85)
    preferred = ["hokusai_great_wave", "van_gogh_starry_night", "kandinsky_composition_viii", "durer_lion"]
    if set(preferred) <= set(styles):
        chosen = preferred
    photo = pics[0]
    save_image(model.blend_grid(photo, chosen[:2], steps=5, size=192), out / "blend_strip.jpg", quality=85)
    if len(chosen) >= 4:
        save_image(model.blend_grid(photo, chosen[:4], steps=5, size=160), out / "grid4.jpg", quality=85)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
