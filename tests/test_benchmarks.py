"""The benchmark suite's own arithmetic and plumbing (its figures are measured, not tested)."""

import resource
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks.reference import TransformerNet
from benchmarks.run import child, markdown, ratios, training_flops, transformer_flops
from cin_style import StyleTransformer

MACS_PER_PIXEL = 153_792  # the count for the transformer at width 1.0, by hand below


def test_transformer_flops_are_the_hand_count():
    by_hand = (
        9 * 9 * 3 * 32  # conv 9x9 3->32 at full resolution
        + 3 * 3 * 32 * 64 / 4  # stride 2
        + 3 * 3 * 64 * 128 / 16  # stride 2
        + 10 * 3 * 3 * 128 * 128 / 16  # five residual blocks of two convs
        + 3 * 3 * 128 * 64 / 4  # upsample to 1/2, conv
        + 3 * 3 * 64 * 32  # upsample to full, conv
        + 9 * 9 * 32 * 3  # conv 9x9 32->3
    )
    assert by_hand == MACS_PER_PIXEL
    assert transformer_flops(64, 96) == 2 * MACS_PER_PIXEL * 64 * 96


def test_training_step_flops_count_forward_and_backward():
    hw = 64 * 64
    transformer = MACS_PER_PIXEL * hw
    first_conv = 9 * 9 * 3 * 32 * hw  # the photo needs no gradient
    vgg = (  # VGG-16 convolutions up to relu4_3, at 1, 1/4, 1/16 and 1/64 of the pixels
        (3 * 64 + 64 * 64) * 9 * hw
        + (64 * 128 + 128 * 128) * 9 * hw // 4
        + (128 * 256 + 2 * 256 * 256) * 9 * hw // 16
        + (256 * 512 + 2 * 512 * 512) * 9 * hw // 64
    )
    # transformer: forward, weight gradients, input gradients but the first layer's;
    # VGG-16 (frozen): forward on the output and on the photo, input gradients on the output.
    assert training_flops(64) == 2 * (3 * transformer - first_conv + 3 * vgg)


def test_reference_has_our_convolutions_plus_biases():
    ours = {tuple(m.weight.shape) for m in StyleTransformer(num_styles=1).modules() if isinstance(m, torch.nn.Conv2d)}
    ref = [m for m in TransformerNet().modules() if isinstance(m, torch.nn.Conv2d)]
    assert {tuple(m.weight.shape) for m in ref} == ours
    assert all(m.bias is not None for m in ref)
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) and m.affine for m in TransformerNet().modules()) == 15


@pytest.mark.parametrize("impl", ["ours", "reference"])
@pytest.mark.parametrize("kind", ["inference", "training"])
def test_each_row_runs_and_reports_times_and_memory(impl, kind, vgg_state):
    spec = {"device": "cpu", "warmup": 0, "repeats": 2, "kind": kind, "impl": impl, "height": 32, "width": 48, "batch": 2, "size": 32}
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731 - Linux reports KiB
    before = peak()
    result = child(spec)
    assert len(result["seconds"]) == 2 and all(t > 0 for t in result["seconds"])
    assert before <= result["peak_bytes"] <= peak(), "the process's own peak, in bytes"


def test_ratios_and_table_pair_ours_with_the_reference():
    rows = {
        "inference": [
            {"kind": "inference", "impl": "ours", "height": 8, "width": 8, "batch": 1, "images_per_s": 3.0, "tflops": 1.0, "peak_gb": 1.0},
            {"kind": "inference", "impl": "reference", "height": 8, "width": 8, "batch": 1, "images_per_s": 2.0, "tflops": 0.5, "peak_gb": 2.0},
        ]
    }
    assert ratios(rows) == [{"kind": "inference", "shape": "8x8 b1", "ratio": 1.5}]
    table = markdown({"date": "d", "machine": "m", "torch": "t", "command": "c", "rows": rows})
    assert "| inference | 8x8 b1 | 3.000 | 2.000 | 1.50 |" in table


def test_command_line_refuses_unknown_rows():
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--only", "everything"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown rows: everything" in done.stderr


def test_flicker_names_models_by_the_shortest_path_tail_that_tells_them_apart():
    from benchmarks.flicker import short_names

    assert short_names(["runs/w0/model.safetensors", "runs/w500/model.safetensors"]) == ["w0/model", "w500/model"]
    assert short_names(["a.safetensors", "dir/b.safetensors"]) == ["a", "b"]
    assert short_names(["x/m.safetensors", "x/m.safetensors"]) == ["x/m.safetensors", "x/m.safetensors"]


def test_flicker_wants_one_label_per_model():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.flicker", "-m", "a.safetensors", "-m", "b.safetensors", "--label", "only one"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "one --label per -m" in done.stderr


def test_the_stroke_benchmarks_edge_figure_by_hand():
    from PIL import Image, ImageFilter

    from benchmarks.strokes import edge_correlation

    rng = np.random.default_rng(0)
    photo = Image.fromarray((np.kron(rng.random((12, 16, 3)), np.ones((16, 16, 1))) * 255).astype(np.uint8))
    assert edge_correlation(photo, photo) == pytest.approx(1.0, abs=1e-9)
    blurred = photo.filter(ImageFilter.GaussianBlur(6))  # what a plain upscale does to edges
    assert 0.2 < edge_correlation(blurred, photo) < 0.9
    noise = Image.fromarray((rng.random((192, 256, 3)) * 255).astype(np.uint8))
    assert abs(edge_correlation(noise, photo)) < 0.1 and edge_correlation(photo, noise) == pytest.approx(edge_correlation(noise, photo))


def test_both_paths_parse_the_style_once_on_their_way_to_the_cin_layer():
    """The traced walk of issue 34: `cin-style stylize -s NAME` and the app's slider each turn the
    user's style into weights once, at the edge, and reach ConditionalInstanceNorm2d."""
    from benchmarks.walkthrough import walk

    for path, r in walk().items():
        assert r["sequence"][-1] == "network/transformer.py", path  # it got to the CIN layer
        assert r["parse_style_string"] + r["blend_weights on a name or mapping"] == 1, (path, r)
        assert "network/styles.py" in r["files"] and "inference/engines.py" in r["files"]


def _report(ratios: dict[str, float], **changes) -> dict:
    styles = {name: {"ratio": r, "style": 2.0 * r, "content": r, "total": 3.0 * r} for name, r in ratios.items()}
    report = {"schema": "cin-style-evaluate/4", "photos": ["a.jpg"], "size": 256, "optimize": {"steps": 100},
              "loss": {"style_weight": 5.0, "balance": "none"}, "styles": styles, "mean": {"style": 1.0, "content": 1.0},
              "identification": {"accuracy": 1.0, "per_style": {n: 1.0 for n in ratios}}}
    return report | changes


def test_before_after_marks_a_style_worse_by_more_than_the_tolerance():
    from benchmarks.before_after import compare

    before = _report({"a": 2.0, "b": 2.0, "c": 1.0})
    after = _report({"a": 2.0 * 1.049, "b": 2.0 * 1.051, "c": 0.5}, loss={"style_weight": 5.0, "balance": "gatys"})  # balance is not scoring
    lines, worse = compare(before, after, tolerance=0.05)
    assert worse == ["b"]
    assert "| a | 2.00 | 2.10 | +4.9 % |" in lines[2]
    assert "**median** | **2.00** | **2.10** | +4.9 %" in lines[-1]  # medians of (2, 2, 1) and (2.098, 2.102, 0.5)


def test_before_after_refuses_reports_that_do_not_compare():
    from benchmarks.before_after import compare

    with pytest.raises(SystemExit, match="photos"):
        compare(_report({"a": 2.0}), _report({"a": 2.0}, photos=["b.jpg"]))
    with pytest.raises(SystemExit, match="different losses"):
        compare(_report({"a": 2.0}), _report({"a": 2.0}, loss={"style_weight": 1.0}))
