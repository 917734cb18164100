"""The README gallery, made from the bundled model (or any model) with photos the project may ship.

    python scripts/make_gallery.py [-m MODEL] [--out docs/gallery]

Photos: scikit-image's sample photos when it is installed (``pip install "cin-style[figures]"``:
astronaut, public domain; chelsea and coffee, CC0), else the bundled demo photo alone; nothing is
downloaded. Writes ``styles.jpg`` (photos x several styles), ``blend_strip.jpg`` (two styles)
and ``grid4.jpg`` (the CIN paper's four-style grid).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from cin_style import StyleModel
from cin_style.api import demo_photo_path
from cin_style.images import load_image, save_image
from cin_style.sheets import contact_sheet
from cin_style.styles import IDENTITY

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
    parser.add_argument("--styles", type=int, default=5, help="styles in the photo x style sheet")
    parser.add_argument("--out", default=str(REPO / "docs" / "gallery"))
    args = parser.parse_args()
    model = StyleModel.load(args.model) if args.model else StyleModel.pretrained()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    styles = [s for s in model.styles if s != IDENTITY]
    step = max(1, len(styles) // args.styles)
    chosen = styles[::step][: args.styles]
    pics = [p.resize((256, round(256 * p.height / p.width)), Image.Resampling.LANCZOS) for p in photos()]
    rows = [[p, *(model.stylize(p, style=s) for s in chosen)] for p in pics]
    save_image(contact_sheet(rows, labels=[["photo", *chosen]] + [[""] * (len(chosen) + 1)] * (len(rows) - 1)), out / "styles.jpg", quality=85)
    photo = pics[0]
    save_image(model.blend_grid(photo, chosen[:2], steps=5, size=192), out / "blend_strip.jpg", quality=85)
    if len(chosen) >= 4:
        save_image(model.blend_grid(photo, chosen[:4], steps=5, size=160), out / "grid4.jpg", quality=85)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
