"""Measure a trained network with the losses it was trained on, optionally against Gatys et al.

For every style of a model: the mean content loss, style loss and total over a set of
held-out photos at a fixed size, computed with the training definitions
(:class:`~cin_style.losses.perceptual.PerceptualLoss`, configured from the model file's training record).
With ``optimize_steps`` the same figures for the optimization method on the same photos
(:func:`~cin_style.losses.optimize.optimize_images`) and the ratio feed-forward / optimization.

The report is a plain dict with a stable schema (``SCHEMA``; documented in
``docs/evaluate.md``); :func:`markdown_table` renders it. Files are the caller's business.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cin_style.inference.style_model import StyleModel
from cin_style.io.paintings import find_paintings, load_center_crops, load_style_image, recorded_style_size
from cin_style.io.images import find_images
from cin_style.losses.perceptual import LossConfig, PerceptualLoss
from cin_style.losses.optimize import optimize_images
from cin_style.network.styles import IDENTITY
from cin_style.losses.vgg import project_cache_dir

__all__ = [
    "SCHEMA", "OptimizedCache", "model_loss", "evaluate", "evaluate_folder", "optimized_photos", "write_report", "evaluate_model", "evaluated_styles", "markdown_table",
    "gram_distances", "identification", "style_identification", "identity_psnr", "psnr", "border_step",
]  # fmt: skip

SCHEMA = "cin-style-evaluate/4"

#: Styles whose painted frame (``border_step``) reaches this many 8-bit levels are named in the
#: report. The bundled network's styles whose paintings have no frame measure within about ±6.
BORDER_VISIBLE = 8.0


def model_loss(model: StyleModel) -> PerceptualLoss:
    """The loss ``model`` was trained with (its training record, :meth:`LossConfig.from_record`), for
    one style whose targets are passed as Gram matrices, on the model's device."""
    return PerceptualLoss(num_styles=1, config=LossConfig.from_record(model.training)).to(model.device).eval()


def evaluated_styles(styles: Sequence[str]) -> list[str]:
    """The styles that have a painting to be compared with: all but the identity row."""
    return [s for s in styles if s != IDENTITY]


def _mean_terms(sums: dict[str, float], count: int) -> dict[str, float]:
    return {k: v / count for k, v in sums.items()}


_TERMS = ("content", "style", "total")


def _accumulate(sums: dict[str, float], terms: Mapping[str, float]) -> None:
    """Adds one result's content, style and total figures to ``sums`` (the network's batch
    sums and the optimization method's per-photo figures alike)."""
    for key in _TERMS:
        sums[key] = sums.get(key, 0.0) + terms[key]


class OptimizedCache:
    """The optimization method's figures, kept between evaluations as small JSON files in ``folder``.

    Gatys et al.'s result does not depend on the network, so after one evaluation with
    ``optimize_steps``, measuring a retrained model again costs only the network's pass (the
    bundled model's gate: 72 minutes on 2 cores the first time, minutes after). An entry is found
    by a digest of everything the optimization depends on: the photos' pixels (the photos of one
    batch are one problem, :func:`~cin_style.losses.optimize.optimize_images`), the painting's Gram
    targets, the loss settings, the VGG-16 weights, the method and its steps. ``recompute``
    ignores what is there (and replaces it). ``hits`` and ``misses`` count lookups."""

    def __init__(self, folder: str | os.PathLike | None = None, *, recompute: bool = False) -> None:
        self.folder = Path(folder) if folder is not None else project_cache_dir() / "optimized"
        self.recompute = recompute
        self.hits = self.misses = 0
        self._vgg_digests: dict[int, str] = {}

    def key(self, photos: Tensor, grams: Mapping[str, Tensor], loss: PerceptualLoss, *, steps: int, method: str) -> str:
        """The digest naming the entry for optimizing ``photos`` towards ``grams``."""
        if id(loss.vgg) not in self._vgg_digests:
            from cin_style.io.export import weights_digest

            self._vgg_digests[id(loss.vgg)] = weights_digest(loss.vgg)
        digest = hashlib.sha256()
        setting = {"loss": loss.config.scoring_record(), "vgg": self._vgg_digests[id(loss.vgg)], "steps": steps, "method": method, "init": "content"}
        digest.update(json.dumps(setting, sort_keys=True).encode())
        for tensor in (photos, *(grams[name] for name in sorted(grams))):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    def get(self, key: str) -> list[dict[str, float]] | None:
        """Per photo ``{"content", "style", "total"}``, or ``None`` when not there (or ``recompute``)."""
        path = self.folder / f"{key}.json"
        if self.recompute or not path.is_file():
            self.misses += 1
            return None
        try:
            terms = json.loads(path.read_text())["terms"]
        except (OSError, ValueError, KeyError):  # a damaged entry is computed again
            self.misses += 1
            return None
        self.hits += 1
        return terms

    def put(self, key: str, terms: list[dict[str, float]]) -> None:
        from cin_style.io.files import atomic_path

        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"{key}.json") as tmp:
            tmp.write_text(json.dumps({"terms": terms}) + "\n")


def _optimized_terms(
    photos: Tensor, grams: dict[str, Tensor], *, loss: PerceptualLoss, steps: int, method: str, cache: OptimizedCache | None
) -> list[dict[str, float]]:
    """Per photo, the optimization method's final ``{"content", "style", "total"}`` (from ``cache`` when there)."""
    key = cache.key(photos, grams, loss, steps=steps, method=method) if cache is not None else ""
    found = cache.get(key) if cache is not None else None
    if found is not None:
        return found
    t = optimize_images(photos, loss=loss, style_grams=grams, steps=steps, method=method).terms
    terms = [{"content": float(c), "style": float(s), "total": float(x)} for c, s, x in zip(t.content.double(), t.style.double(), t.total.double())]
    if cache is not None:
        cache.put(key, terms)
    return terms


def optimized_photos(style_index: int, count: int, num_photos: int) -> list[int]:
    """The photos the optimization method runs on for the ``style_index``-th style: ``count`` of
    them, a different run of photos for each style, so that a subset still covers every photo."""
    count = min(count, num_photos)
    return [(style_index * count + i) % num_photos for i in range(count)]


def evaluate_model(
    model: StyleModel,
    photos: Tensor,
    style_images: Mapping[str, Tensor],
    *,
    loss: PerceptualLoss,
    batch_size: int = 8,
    optimize_steps: int = 0,
    optimize_method: str = "lbfgs",
    optimize_photos: int | None = None,
    optimize_cache: OptimizedCache | None = None,
    progress: Callable[[str], None] | None = None,
    rows: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-style mean losses of ``model`` on ``photos`` (P, 3, H, W) against each style's painting.

    ``style_images`` maps each of the model's style names to its painting (3, H, W), already
    at the style size. Returns ``{style: {"content", "style", "total", "border", "nearest"}}``,
    where ``border`` is the mean :func:`border_step` (a frame painted along the image's edge) and
    ``nearest`` lists, per photo, the painting nearest the output in Gram space
    (:func:`gram_distances`; :func:`style_identification` sums these up). With ``optimize_steps``
    each row adds ``"optimized"`` (the optimization method's mean terms on ``optimize_photos`` of
    the photos, all by default; :func:`optimized_photos` picks them), ``"ratios"`` (network total
    over optimized total, per optimized photo) and their median ``"ratio"``; ``optimize_cache``
    keeps the optimization's figures for the next evaluation. ``rows`` evaluates only those styles
    (a style just added, say), still identified among all the model's paintings.
    """
    styles = evaluated_styles(model.styles)
    unknown = [r for r in rows or () if r not in styles]
    if unknown:
        raise ValueError(f"no evaluated style(s) {', '.join(unknown)}; the model's: {', '.join(styles)}")
    missing = [s for s in styles if s not in style_images]
    if missing:
        raise ValueError(f"no painting for style(s) {', '.join(missing)}")
    device = model.device
    painting_grams = [loss.style_grams(style_images[name].unsqueeze(0).to(device)) for name in styles]
    targets = {layer: torch.cat([g[layer] for g in painting_grams]) for layer in painting_grams[0]}
    results: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(styles):
        if rows is not None and name not in rows:
            continue
        grams = painting_grams[index]
        weights = model.weights(name)
        sums: dict[str, float] = {}
        totals: list[float] = []  # the network's total per photo, for the ratios
        nearest: list[str] = []
        borders: list[float] = []
        for start in range(0, photos.shape[0], batch_size):
            batch = photos[start : start + batch_size].to(device)
            with torch.no_grad():
                output = model.stylize_tensor(batch, weights, stroke="native", tile=0)  # the network itself, at the size measured
                terms = loss(output, batch, style_grams=grams)
                output_grams = terms.grams if terms.grams is not None else loss.style_grams(output)  # style weight 0
            _accumulate(sums, {key: float(getattr(terms, key).double().sum()) for key in _TERMS})
            totals += terms.total.tolist()
            borders += border_step(output, batch).tolist()
            nearest += [styles[n] for n in gram_distances(output_grams, targets).argmin(dim=1).tolist()]
            if progress is not None:
                progress(name)
        row: dict[str, Any] = {**_mean_terms(sums, photos.shape[0]), "border": statistics.fmean(borders), "nearest": nearest}
        if optimize_steps:
            chosen = optimized_photos(index, optimize_photos or photos.shape[0], photos.shape[0])
            optimized: dict[str, float] = {}
            ratios: list[float] = []
            for start in range(0, len(chosen), batch_size):
                part = chosen[start : start + batch_size]
                terms = _optimized_terms(photos[part].to(device), grams, loss=loss, steps=optimize_steps, method=optimize_method, cache=optimize_cache)
                for t in terms:
                    _accumulate(optimized, t)
                ratios += [totals[i] / t["total"] for i, t in zip(part, terms)]
                if progress is not None:
                    progress(name)
            row["optimized"] = {**_mean_terms(optimized, len(chosen)), "photos": chosen}
            row["ratios"] = ratios
            row["ratio"] = statistics.median(ratios)
        results[name] = row
    return results


def border_step(output: Tensor, photo: Tensor, *, width: int = 2, inside: int = 6) -> Tensor:
    """Per image, how much lighter (positive) or darker (negative) the output's outermost
    ``width`` pixels are than the ``inside`` pixels next to them, beyond the photo's own
    difference there, in 8-bit levels (mean of R, G and B).

    A network that paints a frame along the image's edge (learned from a painting file's
    frame, through the padding that tells it where the image ends) shows a large value; one
    that does not gives about 0 whatever the photo, since the photo's own edge is subtracted.
    """
    height, width_px = output.shape[-2:]
    rows = torch.arange(height, device=output.device)
    cols = torch.arange(width_px, device=output.device)
    edge = torch.minimum(torch.minimum(rows, height - 1 - rows)[:, None], torch.minimum(cols, width_px - 1 - cols)[None, :])
    outer, inner = edge < width, (edge >= width) & (edge < width + inside)

    def step(images: Tensor) -> Tensor:
        brightness = images.float().mean(dim=1)
        return brightness[:, outer].mean(dim=1) - brightness[:, inner].mean(dim=1)

    return 255 * (step(output) - step(photo))


def gram_distances(grams: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
    """(B, S) distances of B images' Gram matrices to S paintings': for each layer the Frobenius
    distance relative to the painting's Gram norm, averaged over the layers. Relative, so that no
    layer (relu4_3's Grams are orders of magnitude larger than relu1_2's) decides alone."""
    total = None
    for name, g in grams.items():
        t = targets[name].to(g)
        d = torch.cdist(g.flatten(1).double(), t.flatten(1).double()) / t.flatten(1).double().norm(dim=1)
        total = d if total is None else total + d
    assert total is not None, "no style layers"
    return (total / len(grams)).float()


def identification(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """How often each style's output is nearest its own painting, from :func:`evaluate_model`'s rows:
    ``{"accuracy", "per_style": {style: accuracy}, "confusions": {style: {painting: count}}}``."""
    per_style, confusions = {}, {}
    for name, row in rows.items():
        nearest = row["nearest"]
        per_style[name] = sum(n == name for n in nearest) / len(nearest)
        wrong: dict[str, int] = {}
        for n in nearest:
            if n != name:
                wrong[n] = wrong.get(n, 0) + 1
        if wrong:
            confusions[name] = wrong
    return {"accuracy": sum(per_style.values()) / len(per_style), "per_style": per_style, "confusions": confusions}


def style_identification(
    model: StyleModel, photos: Tensor, style_images: Mapping[str, Tensor], *, loss: PerceptualLoss, batch_size: int = 8
) -> dict[str, Any]:
    """How often each style's output is nearest its own painting among all the model's paintings.

    For every photo and style the output's Gram matrices (the loss's style layers) are compared with
    every painting's (:func:`gram_distances`); the nearest painting should be the style's own. A
    network whose styles look alike fails this, and painting everything like one painting cannot
    pass it. Returns :func:`identification`'s dict. (:func:`evaluate` gets it from the same pass
    that measures the losses.)"""
    return identification(evaluate_model(model, photos, style_images, loss=loss, batch_size=batch_size))


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB of images in [0, 1], after rounding both to 8 bits (what a saved file holds)."""
    a8, b8 = (torch.round(x.float().clamp(0, 1) * 255) for x in (a, b))
    mse = (a8 - b8).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


@torch.no_grad()
def identity_psnr(model: StyleModel, photos: Tensor, *, batch_size: int = 8) -> list[float] | None:
    """Each photo's PSNR (dB) of the identity row's output (the strength dial at 0) against the photo;
    ``None`` for a model without an identity row."""
    if IDENTITY not in model.styles:
        return None
    weights, values = model.weights(IDENTITY), []
    for start in range(0, photos.shape[0], batch_size):
        batch = photos[start : start + batch_size].to(model.device)
        values += psnr(model.stylize_tensor(batch, weights, stroke="native", tile=0), batch).tolist()
    return values


def worst_border(styles: Mapping[str, Mapping[str, Any]]) -> tuple[str, float]:
    """The style whose painted frame (``border``) is largest in size, and that border with its sign."""
    name = max(styles, key=lambda n: abs(float(styles[n]["border"])))
    return name, float(styles[name]["border"])


def summary(styles: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Means over styles of the per-style figures; with the optimization method, the median
    ratio over every (photo, style) pair it ran on."""
    n = len(styles)
    out = {key: sum(float(r[key]) for r in styles.values()) / n for key in ("content", "style", "total")}
    out["border"] = worst_border(styles)[1]  # the worst style's, with its sign
    if all("optimized" in r for r in styles.values()):
        out["optimized_total"] = sum(float(r["optimized"]["total"]) for r in styles.values()) / n
        out["ratio"] = statistics.median(x for r in styles.values() for x in r["ratios"])  # over all (photo, style) pairs
    return out


def evaluate(
    model: StyleModel,
    photos: Sequence[Path],
    paintings: Mapping[str, Path],
    *,
    size: int = 256,
    style_size: int | None = None,
    batch_size: int = 8,
    optimize_steps: int = 0,
    optimize_method: str = "lbfgs",
    optimize_photos: int | None = None,
    optimize_cache: OptimizedCache | None = None,
    model_name: str | None = None,
    photo_root: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The full report (``SCHEMA``, documented in ``docs/evaluate.md``) of ``model`` on the photo
    files (centre crops of ``size``) against each style's painting file (:func:`cin_style.io.paintings.find_paintings`):
    per-style losses (and the optimization method's, with ``optimize_steps``, on ``optimize_photos``
    photos per style, kept in ``optimize_cache`` when given), style identification and the identity row's PSNR. Paintings are taken at
    the style size the model was trained with unless ``style_size`` is given; ``progress`` shows
    a progress bar."""
    from tqdm.auto import tqdm

    loss = model_loss(model)
    style_size = style_size or recorded_style_size(model.training)
    style_images = {name: load_style_image(path, style_size) for name, path in paintings.items()}
    tensors = load_center_crops(list(photos), size)
    batches = -(-len(photos) // batch_size) + (-(-min(optimize_photos or len(photos), len(photos)) // batch_size) if optimize_steps else 0)
    with tqdm(total=batches * len(style_images), unit="batch", desc="evaluate", disable=not progress) as bar:
        styles = evaluate_model(
            model, tensors, style_images, loss=loss, batch_size=batch_size, optimize_steps=optimize_steps,
            optimize_method=optimize_method, optimize_photos=optimize_photos, optimize_cache=optimize_cache, progress=lambda name: bar.update(1),
        )  # fmt: skip
    identity = identity_psnr(model, tensors, batch_size=batch_size)
    return {
        "schema": SCHEMA,
        "model": model_name or model.source or "",
        "model_steps": model.training.get("steps"),
        "size": size,
        "num_photos": len(photos),
        "photos": [str(f.relative_to(photo_root) if photo_root else f) for f in photos],
        "loss": {**loss.config.record(), "style_size": style_size},
        "vgg_weights": loss.vgg.weights_source,
        "optimize": {"steps": optimize_steps, "method": optimize_method, "init": "content", "photos_per_style": min(optimize_photos or len(photos), len(photos))} if optimize_steps else None,
        "styles": {name: {"style_image": paintings[name].name, **{k: v for k, v in row.items() if k != "nearest"}} for name, row in styles.items()},
        "mean": summary(styles),
        "identification": identification(styles),
        "identity_psnr": None if identity is None else {"median": statistics.median(identity), "min": min(identity), "per_photo": identity},
    }


def evaluate_folder(
    model: StyleModel, content: str | os.PathLike, style_folder: str | os.PathLike, *, limit: int | None = None, **options: Any
) -> dict[str, Any]:
    """:func:`evaluate` on the first ``limit`` photos of the folder ``content`` (all by default)
    against the paintings in ``style_folder``, found by the names recorded at training
    (:func:`cin_style.io.paintings.find_paintings`); ``options`` go to :func:`evaluate`."""
    content = Path(content)
    photos = find_images(content)[:limit] if content.is_dir() else []
    if not photos:
        raise FileNotFoundError(f"{content}: no photos found")
    paintings = find_paintings(style_folder, evaluated_styles(model.styles), model.training.get("style_files"))
    return evaluate(model, photos, paintings, photo_root=content, **options)


def markdown_table(report: Mapping[str, Any]) -> str:
    """The per-style figures of a report as a Markdown table, with the setting above it."""
    optimized = report.get("optimize") is not None
    head = "| style | content | style | total |" + (" Gatys total | ratio feed-forward / Gatys |" if optimized else "")
    rule = "|---|---|---|---|" + ("---|---|" if optimized else "")
    lines = [
        f"Model `{report['model']}`, {report['num_photos']} photos at {report['size']} px, "
        f"content weight {report['loss']['content_weight']}, style weight {report['loss']['style_weight']}"
        + (f"; Gatys et al.: {report['optimize']['steps']} {report['optimize']['method']} steps from the photo" if optimized else "")
        + ".",
        "",
        head,
        rule,
    ]
    rows: Sequence[tuple[str, Mapping[str, Any]]] = [*report["styles"].items(), ("**mean**", report["mean"])]
    for name, r in rows:
        line = f"| {name} | {r['content']:.4f} | {r['style']:.4f} | {r['total']:.4f} |"
        if optimized:
            opt = r["optimized"]["total"] if "optimized" in r else r["optimized_total"]
            line += f" {opt:.4f} | {r['ratio']:.3f} |"
        lines.append(line)
    ident = report.get("identification")
    if ident:
        lines += ["", f"Style identification: {100 * ident['accuracy']:.1f}% of outputs are nearest their own painting "
                  f"(of {len(ident['per_style'])}, in VGG-16 Gram space)."]  # fmt: skip
        worst = sorted(ident["per_style"].items(), key=lambda kv: kv[1])[:3]
        if worst and worst[0][1] < 1:
            lines.append("Least identified: " + ", ".join(f"{name} {100 * acc:.0f}%" for name, acc in worst) + ".")
    worst, border = worst_border(report["styles"])
    lines += ["", f"Border (a frame painted along the edge; 8-bit levels, lighter +, darker -): the largest is {border:+.1f} ({worst})"
              + "; " + (", ".join(f"{n} {r['border']:+.1f}" for n, r in report["styles"].items() if abs(r["border"]) >= BORDER_VISIBLE) or "none")
              + f" at {BORDER_VISIBLE:g} levels or more."]  # fmt: skip
    if report.get("identity_psnr"):
        p = report["identity_psnr"]
        lines += ["", f"Strength 0 (the identity row) against the photo: median PSNR {p['median']:.2f} dB, lowest {p['min']:.2f} dB."]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], path: str | os.PathLike, *, sheet: Any = None) -> list[Path]:
    """Write ``report`` as JSON to ``path`` (atomically), its :func:`markdown_table` beside it
    (``.md``) and, when given, a contact sheet (a PIL image, ``.sheet.jpg``). Returns the paths."""
    import json

    from cin_style.io.files import atomic_path
    from cin_style.io.images import save_image

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    stem = path.with_suffix("")
    written = [path, Path(f"{stem}.md")]
    written[1].write_text(markdown_table(report))
    if sheet is not None:
        written.append(Path(f"{stem}.sheet.jpg"))
        save_image(sheet, written[2], quality=90)
    return written
