"""The optimization method (Gatys et al.) and the evaluate command, with real VGG-16 weights."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from cin_style import PerceptualLoss, StyleModel, StyleTransformer
from cin_style.io.paintings import load_center_crops, load_style_image
from cin_style.io.images import find_images
from cin_style.quality.evaluate import SCHEMA, OptimizedCache, evaluate_model, optimized_photos
from cin_style.losses.perceptual import LossConfig
from cin_style.io.modelfile import write_model
from cin_style.losses.optimize import optimize_images

CLI = str(Path(sys.executable).parent / "cin-style")


@pytest.fixture(scope="module")
def loss(vgg_state) -> PerceptualLoss:
    from cin_style.losses.vgg import VGG16Features

    config = LossConfig()
    vgg = VGG16Features(layers=[*config.content_layers, *config.style_layers], weights="random")
    vgg.load_state_dict({k: v for k, v in vgg_state.items() if k in vgg.state_dict()})
    return PerceptualLoss(num_styles=1, config=config, vgg=vgg).eval()


@pytest.fixture(scope="module")
def photo_and_painting(data_root):
    photo = load_center_crops([data_root / "content" / "val" / "kodim23.jpg"], 64)
    painting = load_style_image(data_root / "styles" / "van_gogh_starry_night.jpg", 64)
    return photo, painting


@pytest.mark.parametrize("method, init", [("lbfgs", "content"), ("adam", "noise")])
def test_optimization_lowers_the_loss_by_half_in_50_steps(loss, photo_and_painting, method, init):
    photo, painting = photo_and_painting
    grams = loss.style_grams(painting[None])
    calls = []
    result = optimize_images(photo, loss=loss, style_grams=grams, steps=50, method=method, init=init, progress=lambda s, l: calls.append(s))
    with torch.no_grad():
        start = photo if init == "content" else torch.rand(photo.shape, generator=torch.Generator().manual_seed(0))
        before = loss(start, photo, style_grams=grams).total.item()
    after = result.history[-1]["total"]
    assert calls == list(range(1, 51)) and len(result.history) == 50
    assert after <= 0.5 * before, (before, after)
    assert result.images.min() >= 0 and result.images.max() <= 1
    # The loss the optimizer reports is the training loss of its image, computed independently.
    with torch.no_grad():
        assert loss(result.images, photo, style_grams=grams).total.item() == pytest.approx(after, rel=1e-4)
    if method == "lbfgs":  # L-BFGS with a line search never goes up by much
        totals = [h["total"] for h in result.history]
        assert all(b <= a * 1.05 for a, b in zip(totals, totals[1:]))


def test_optimization_arguments_are_checked(loss, photo_and_painting):
    photo, painting = photo_and_painting
    grams = loss.style_grams(painting[None])
    for kwargs, words in [({"method": "sgd"}, "method"), ({"init": "zeros"}, "init"), ({"steps": 0}, "steps")]:
        with pytest.raises(ValueError, match=words):
            optimize_images(photo, loss=loss, style_grams=grams, **kwargs)


def _model(num_styles=2, seed=0) -> StyleTransformer:
    torch.manual_seed(seed)
    net = StyleTransformer(num_styles=num_styles, width=0.25)
    with torch.no_grad():
        for norm in net.norms():
            norm.gamma.normal_(1.0, 0.3)
            norm.beta.normal_(0.0, 0.3)
    return net.eval()


def test_evaluate_equals_a_direct_computation_with_the_loss_module(loss, data_root):
    files = find_images(data_root / "content" / "val")[:3]
    photos = load_center_crops(files, 64)
    paintings = {n: load_style_image(data_root / "styles" / f"{n}.jpg", 64) for n in ("hokusai_great_wave", "durer_lion")}
    net = _model()
    model = StyleModel(net, list(paintings), device="cpu")
    report = evaluate_model(model, photos, paintings, loss=loss, batch_size=2)
    for s, name in enumerate(paintings):
        with torch.no_grad():
            grams = loss.style_grams(paintings[name][None])
            out = net(photos, torch.nn.functional.one_hot(torch.tensor([s] * 3), 2).float())
            # Independently: the content term by hand, the style term through the loss.
            feats, target = loss.vgg(out), loss.vgg(photos)
            content = ((feats["relu3_3"] - target["relu3_3"]) ** 2).flatten(1).mean(1).mean().item()
            terms = loss(out, photos, style_grams=grams)
        assert report[name]["content"] == pytest.approx(content, rel=1e-4)
        assert report[name]["style"] == pytest.approx(terms.style.mean().item(), rel=1e-4)
        assert report[name]["total"] == pytest.approx(report[name]["content"] + report[name]["style"], rel=1e-6)


def test_evaluate_command_writes_the_documented_schema(tmp_path, data_root):
    styles = ["hokusai_great_wave", "durer_lion"]
    model_file = write_model(tmp_path / "m.safetensors", _model(), styles, training={"steps": 3, "style_size": 64, "style_weight": 5.0})
    out = tmp_path / "eval" / "report.json"
    args = ["evaluate", "-m", model_file, "--content", data_root / "content" / "val", "--style-images", data_root / "styles"]
    args += ["--size", "64", "--limit", "2", "--optimize-steps", "2", "--optimize-photos", "1", "--optimize-cache", tmp_path / "cache"]
    r = subprocess.run([CLI, *map(str, args), "--json", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "0 batch(es) from the cache, 2 computed" in r.stdout
    report = json.loads(out.read_text())
    again = subprocess.run([CLI, *map(str, args), "--json", tmp_path / "again.json"], capture_output=True, text=True)
    assert again.returncode == 0 and "2 batch(es) from the cache, 0 computed" in again.stdout, again.stderr[-3000:]
    assert json.loads((tmp_path / "again.json").read_text())["styles"] == report["styles"]  # the same figures, read back
    assert report["schema"] == SCHEMA
    assert set(report) == {
        "schema", "model", "model_steps", "size", "num_photos", "photos", "loss", "vgg_weights", "optimize", "styles", "mean",
        "identification", "identity_psnr",
    }  # fmt: skip
    assert set(report["identification"]["per_style"]) == set(styles) and 0 <= report["identification"]["accuracy"] <= 1
    assert report["identity_psnr"] is None  # no identity row in this model
    assert report["num_photos"] == 2 and report["size"] == 64 and report["model_steps"] == 3
    assert report["loss"]["style_size"] == 64 and report["loss"]["style_weight"] == 5.0
    assert report["optimize"] == {"steps": 2, "method": "lbfgs", "init": "content", "photos_per_style": 1}
    for index, name in enumerate(styles):
        row = report["styles"][name]
        assert row["style_image"] == f"{name}.jpg"
        assert set(row) == {"style_image", "content", "style", "total", "border", "optimized", "ratios", "ratio"}
        assert row["optimized"]["photos"] == [index]  # one photo per style, a different one for each
        assert len(row["ratios"]) == 1 and row["ratio"] == row["ratios"][0] > 0
    ratios = sorted(report["styles"][n]["ratios"][0] for n in styles)
    assert report["mean"]["ratio"] == pytest.approx((ratios[0] + ratios[1]) / 2)  # the median over (photo, style) pairs
    assert (tmp_path / "eval" / "report.md").read_text().count("\n| ") == 3 + 1  # header + 2 styles + mean
    assert report["mean"]["border"] in [report["styles"][n]["border"] for n in styles]
    assert "Border (a frame painted along the edge" in r.stdout
    assert Image.open(tmp_path / "eval" / "report.sheet.jpg").size[0] > 3 * 64
    assert "| hokusai_great_wave |" in r.stdout


def test_the_optimized_subset_covers_every_photo_once_per_round():
    assert optimized_photos(0, 3, 24) == [0, 1, 2]
    assert optimized_photos(7, 3, 24) == [21, 22, 23]
    assert optimized_photos(8, 3, 24) == [0, 1, 2]  # wraps around after 24 photos
    assert optimized_photos(1, 1, 24) == [1]
    assert optimized_photos(4, 5, 3) == [0, 1, 2]  # never more photos than there are
    assert sorted(i for s in range(20) for i in optimized_photos(s, 1, 20)) == list(range(20))


def test_ratio_is_the_network_total_over_the_optimized_total_per_photo(loss, data_root, monkeypatch):
    import cin_style.quality.evaluate as evaluation
    from cin_style.losses.perceptual import LossTerms
    from cin_style.losses.optimize import OptimizationResult

    files = find_images(data_root / "content" / "val")[:3]
    photos = load_center_crops(files, 48)
    paintings = {"durer_lion": load_style_image(data_root / "styles" / "durer_lion.jpg", 48)}
    model = StyleModel(_model(num_styles=1), ["durer_lion"], device="cpu")

    def halving_optimizer(batch, *, loss, style_grams, steps, method):  # an optimizer that halves every term
        with torch.no_grad():
            terms = loss(model.stylize_tensor(batch, model.weights(0), tile=0), batch, style_grams=style_grams)
        halved = LossTerms(content=terms.content / 2, style=terms.style / 2, tv=terms.tv / 2)
        return OptimizationResult(images=batch, terms=halved, history=[])

    monkeypatch.setattr(evaluation, "optimize_images", halving_optimizer)
    row = evaluate_model(model, photos, paintings, loss=loss, batch_size=2, optimize_steps=1, optimize_photos=2)["durer_lion"]
    assert row["optimized"]["photos"] == [0, 1]
    assert row["ratios"] == pytest.approx([2.0, 2.0]) and row["ratio"] == pytest.approx(2.0)


def test_the_optimization_cache_returns_what_was_computed_for_the_same_problem_only(loss, data_root, tmp_path, monkeypatch):
    import cin_style.quality.evaluate as evaluation

    files = find_images(data_root / "content" / "val")[:2]
    photos = load_center_crops(files, 48)
    paintings = {"durer_lion": load_style_image(data_root / "styles" / "durer_lion.jpg", 48)}
    model = StyleModel(_model(num_styles=1), ["durer_lion"], device="cpu")
    calls = []
    real = evaluation.optimize_images

    def counted(batch, **kwargs):
        calls.append(batch.shape[0])
        return real(batch, **kwargs)

    monkeypatch.setattr(evaluation, "optimize_images", counted)
    cache = OptimizedCache(tmp_path / "cache")
    first = evaluate_model(model, photos, paintings, loss=loss, optimize_steps=2, optimize_cache=cache)["durer_lion"]
    second = evaluate_model(model, photos, paintings, loss=loss, optimize_steps=2, optimize_cache=cache)["durer_lion"]
    assert calls == [2] and (cache.hits, cache.misses) == (1, 1)  # one batch of two photos, optimized once
    assert second["optimized"] == first["optimized"] and second["ratios"] == first["ratios"]
    direct = real(photos, loss=loss, style_grams=loss.style_grams(paintings["durer_lion"][None]), steps=2).terms
    assert first["optimized"]["total"] == pytest.approx(direct.total.mean().item(), rel=1e-5)  # what the optimizer gives, not a stand-in

    grams = loss.style_grams(paintings["durer_lion"][None])
    key = cache.key(photos, grams, loss, steps=2, method="lbfgs")
    assert key != cache.key(photos.flip(-1), grams, loss, steps=2, method="lbfgs")  # other pixels
    assert key != cache.key(photos, {k: v * 1.001 for k, v in grams.items()}, loss, steps=2, method="lbfgs")  # another painting
    assert key != cache.key(photos, grams, loss, steps=3, method="lbfgs")
    assert key != cache.key(photos, grams, loss, steps=2, method="adam")
    other = PerceptualLoss(num_styles=1, config=LossConfig(style_weight=loss.config.style_weight * 2), vgg=loss.vgg)
    assert key != cache.key(photos, grams, other, steps=2, method="lbfgs")  # other loss weights
    balanced = PerceptualLoss(num_styles=1, config=LossConfig(**{**loss.config.record(), "balance": "gatys", "balance_size": 128}), vgg=loss.vgg)
    assert key == cache.key(photos, grams, balanced, steps=2, method="lbfgs")  # the balance is training's: the same loss, the same figures

    (cache.folder / f"{key}.json").write_text("{ damaged")  # a damaged entry is computed again
    evaluate_model(model, photos, paintings, loss=loss, optimize_steps=2, optimize_cache=cache)
    assert calls == [2, 2]
    evaluate_model(model, photos, paintings, loss=loss, optimize_steps=2, optimize_cache=OptimizedCache(cache.folder, recompute=True))
    assert calls == [2, 2, 2]


def test_evaluate_without_paintings_is_a_clear_error(tmp_path, data_root):
    model_file = write_model(tmp_path / "m.safetensors", _model(), ["no_such_painting", "durer_lion"])
    base = [CLI, "evaluate", "-m", str(model_file), "--content", str(data_root / "content" / "val")]
    r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 2 and "--style-images" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*base, "--style-images", str(data_root / "styles")], capture_output=True, text=True)
    assert r.returncode == 2 and "no painting for style(s) no_such_painting" in r.stderr


def test_optimize_command_writes_image_and_loss_curve(tmp_path, data_root):
    out = tmp_path / "gatys.png"
    args = ["optimize", "--content", data_root / "content" / "val" / "kodim23.jpg", "--style", data_root / "styles" / "durer_lion.jpg"]
    r = subprocess.run([CLI, *map(str, args), "-o", out, "--size", "48", "--steps", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert Image.open(out).size == (48, 32)
    lines = (tmp_path / "gatys.loss.csv").read_text().splitlines()
    assert lines[0] == "step,content,style,tv,total" and len(lines) == 6
    totals = [float(line.split(",")[-1]) for line in lines[1:]]
    assert totals[-1] < totals[0]
    assert Image.open(tmp_path / "gatys.loss.png").size == (640, 360)


def test_gram_distances_are_relative_frobenius_distances_averaged_over_layers():
    from cin_style.quality.evaluate import gram_distances

    a = {"l1": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), "l2": torch.tensor([[[2.0]]])}
    targets = {"l1": torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[3.0, 0.0], [0.0, 1.0]]]), "l2": torch.tensor([[[2.0]], [[4.0]]])}
    d = gram_distances(a, targets)
    # painting 0: identical -> 0. painting 1: l1 |diff| = 2, |target| = sqrt(10); l2 |diff| = 2, |target| = 4.
    assert d.shape == (1, 2) and d[0, 0] == 0
    assert float(d[0, 1]) == pytest.approx((2 / 10**0.5 + 2 / 4) / 2, rel=1e-6)


class _PaintsThePainting:
    """A stand-in "model" whose output for style s is painting s itself (or, with ``alike``, always painting 0)."""

    def __init__(self, styles, paintings, alike=False):
        self.styles, self.paintings, self.alike, self.device = styles, paintings, alike, torch.device("cpu")

    def weights(self, name):
        return torch.tensor(float(self.styles.index(name)))

    def stylize_tensor(self, batch, weights, stroke=None, tile=None):
        s = 0 if self.alike else int(weights)
        return self.paintings[s][None].expand(batch.shape[0], -1, -1, -1)


def test_style_identification_tells_styles_apart_and_catches_lookalikes(data_root):
    from cin_style.io.paintings import load_style_image
    from cin_style.quality.evaluate import style_identification

    names = ["hokusai_great_wave", "durer_lion", "van_gogh_starry_night", "cassatt_summertime"]
    paintings = {n: load_style_image(data_root / "styles" / f"{n}.jpg", 64)[:, :64, :64] for n in names}
    loss = PerceptualLoss(num_styles=1).eval()
    photos = torch.rand(2, 3, 64, 64)
    right = style_identification(_PaintsThePainting(names, [paintings[n] for n in names]), photos, paintings, loss=loss)
    assert right["accuracy"] == 1.0 and right["confusions"] == {}
    alike = style_identification(_PaintsThePainting(names, [paintings[n] for n in names], alike=True), photos, paintings, loss=loss)
    assert alike["accuracy"] == 0.25 and alike["per_style"]["hokusai_great_wave"] == 1.0
    assert alike["confusions"]["durer_lion"] == {"hokusai_great_wave": 2}


def test_psnr_on_8_bit_values():
    from cin_style.quality.evaluate import psnr

    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[0, 0, 0, 0] = 10 / 255  # one 8-bit value off by 10 of 48: MSE = 100 / 48
    assert float(psnr(a, b)[0]) == pytest.approx(10 * math.log10(255**2 / (100 / 48)), rel=1e-5)


def test_border_step_measures_a_painted_frame_beyond_the_photos_own_edge():
    from cin_style.quality.evaluate import border_step

    photo = torch.full((2, 3, 20, 30), 0.5)
    photo[1, :, :, :1] = 0.9  # the second photo has a light left edge of its own
    framed = photo.clone()
    framed[:, :, :2], framed[:, :, -2:], framed[:, :, :, :2], framed[:, :, :, -2:] = 0.1, 0.1, 0.1, 0.1
    # Outer ring (within 2 px of an edge): 2*30*2 + 2*16*2 = 184 pixels, all 0.1 in the output.
    # Inner ring (2 to 7 px in): 26*16 - 14*4 = 360 pixels, all 0.5. The first photo is flat,
    # so its step is (0.1 - 0.5) * 255 = -102. The second photo's own edge (20 of its 184 outer
    # pixels at 0.9) is subtracted: its output's outer ring is all 0.1 as well.
    photo_step = (20 * 0.9 + 164 * 0.5) / 184 - 0.5
    expected = torch.tensor([-0.4 * 255, (-0.4 - photo_step) * 255])
    assert torch.allclose(border_step(framed, photo), expected, atol=1e-3)
    assert torch.allclose(border_step(photo, photo), torch.zeros(2), atol=1e-5)  # no frame of its own: 0


def test_summary_and_table_name_the_worst_border_with_its_sign():
    from cin_style.quality.evaluate import markdown_table, summary

    styles = {
        "light": {"content": 1.0, "style": 2.0, "total": 3.0, "border": 8.5},
        "dark": {"content": 2.0, "style": 1.0, "total": 3.0, "border": -9.25},
        "clean": {"content": 3.0, "style": 3.0, "total": 6.0, "border": 0.5},
    }
    mean = summary(styles)
    assert mean == {"content": 2.0, "style": 2.0, "total": 4.0, "border": -9.25}
    report = {"model": "m", "num_photos": 2, "size": 64, "loss": {"content_weight": 1.0, "style_weight": 5.0}, "styles": styles, "mean": mean}
    table = markdown_table(report)
    assert "the largest is -9.2 (dark); light +8.5, dark -9.2 at 8 levels or more." in table
    assert "| **mean** | 2.0000 | 2.0000 | 4.0000 |" in table
