"""Pictures made of pictures: contact sheets and the CIN paper's style-interpolation grids."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["interpolation_weights", "contact_sheet", "loss_curve"]


#: The most images per side of an interpolation grid: 33 x 33 is already 1,089 images.
MAX_BLEND_STEPS = 33


def interpolation_weights(num_styles: int, steps: int) -> list[list[list[float] | None]]:
    """Rows of blend weights over ``num_styles`` (2, 3 or 4) styles; ``None`` marks an empty cell.

    * 2 styles: one strip, ``steps`` images from the first style to the second;
    * 3 styles: a triangle, row ``i`` holding ``i + 1`` barycentric blends, the first style at
      the top and the other two at the bottom corners;
    * 4 styles: a ``steps`` × ``steps`` grid of bilinear weights, the styles at the corners
      (top-left, top-right, bottom-left, bottom-right), as in Dumoulin et al. (2017), Fig. 7.

    Corner weights are exactly one-hot, so the corners equal the pure styles exactly.
    """
    if not 2 <= steps <= MAX_BLEND_STEPS:
        raise ValueError(f"steps must be between 2 and {MAX_BLEND_STEPS}, got {steps}")
    t = [i / (steps - 1) for i in range(steps)]
    if num_styles == 2:
        return [[[1 - u, u] for u in t]]
    if num_styles == 3:
        rows: list[list[list[float] | None]] = []
        for i in range(steps):
            row: list[list[float] | None] = []
            for j in range(steps):
                if j > i:
                    row.append(None)
                    continue
                b, c = (i - j) / (steps - 1), j / (steps - 1)
                row.append([1 - t[i], b, c])
            rows.append(row)
        return rows
    if num_styles == 4:
        return [[[(1 - u) * (1 - v), u * (1 - v), (1 - u) * v, u * v] for u in t] for v in t]
    raise ValueError(f"an interpolation grid takes 2, 3 or 4 styles, got {num_styles}")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def contact_sheet(
    rows: Sequence[Sequence[Image.Image | None]],
    *,
    labels: Sequence[Sequence[str]] | None = None,
    padding: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Lay images out in rows (cells may be None), optionally with a caption under each."""
    cells = [im for row in rows for im in row if im is not None]
    if not cells:
        raise ValueError("no images for the sheet")
    w = max(im.width for im in cells)
    h = max(im.height for im in cells)
    caption = max(12, min(24, w // 14)) if labels else 0
    ncols = max(len(row) for row in rows)
    sheet = Image.new("RGB", (ncols * (w + padding) + padding, len(rows) * (h + caption + padding) + padding), background)
    draw = ImageDraw.Draw(sheet)
    font = _font(caption - 2) if labels else None
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            x, y = padding + c * (w + padding), padding + r * (h + caption + padding)
            if im is not None:
                sheet.paste(im, (x + (w - im.width) // 2, y + (h - im.height) // 2))
            if labels and r < len(labels) and c < len(labels[r]) and labels[r][c]:
                draw.text((x + 2, y + h + 1), labels[r][c], fill=(0, 0, 0), font=font)
    return sheet


def loss_curve(series: dict[str, Sequence[float]], *, title: str = "", size: tuple[int, int] = (640, 360)) -> Image.Image:
    """A line chart of loss curves over steps (log-scaled y axis), drawn with Pillow alone."""
    import math

    values = [v for ys in series.values() for v in ys if v > 0 and math.isfinite(v)]
    if not values:
        raise ValueError("nothing to plot: no positive, finite values")
    lo, hi = math.log10(min(values)), math.log10(max(values))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    steps = max(len(ys) for ys in series.values())
    width, height = size
    left, right, top, bottom = 70, 20, 30, 40
    chart = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(chart)
    font = _font(12)
    draw.rectangle((left, top, width - right, height - bottom), outline=(0, 0, 0))

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (width - left - right) * (i / max(1, steps - 1))
        y = top + (height - top - bottom) * (1 - (math.log10(v) - lo) / (hi - lo))
        return x, y

    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= decade <= hi:
            _, y = xy(0, 10.0**decade)
            draw.line((left, y, width - right, y), fill=(225, 225, 225))
            draw.text((4, y - 7), f"1e{decade}", fill=(0, 0, 0), font=font)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    for k, (name, ys) in enumerate(series.items()):
        points = [xy(i, v) for i, v in enumerate(ys) if v > 0 and math.isfinite(v)]
        colour = colours[k % len(colours)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        draw.text((left + 8 + 110 * k, height - bottom + 18), name, fill=colour, font=font)
    draw.text((left, 8), title, fill=(0, 0, 0), font=font)
    draw.text((width - right - 60, height - bottom + 4), f"{steps} steps", fill=(0, 0, 0), font=font)
    return chart
