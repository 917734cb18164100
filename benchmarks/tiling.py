"""Exact tiled stylization: agreement with the whole-image pass, time and peak memory.

    python -m benchmarks.tiling [--json tiling.json] [--whole-4k] [-m MODEL]

* 1024x1024: whole vs tiled time and PSNR between the two (target >= 40 dB);
* 3840x2160 on CPU: time and peak memory, each in a fresh process (target <= 1.5 GB; the
  whole-image pass, with ``--whole-4k``, needs about 8 GB).

Peak memory is the process's peak resident set size (``ru_maxrss``), which includes about
0.5 GB for PyTorch itself; the growth during the call is reported too. Without ``-m`` the
network is a freshly initialised width-1.0 transformer with random gamma/beta: the cost of
a forward pass does not depend on what the network has learnt.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch


def _model(path: str | None):
    from cin_style import StyleModel, StyleTransformer

    from .run import random_styles

    if path:
        return StyleModel.load(path, device="cpu")
    return StyleModel(random_styles(StyleTransformer(num_styles=4)), ["a", "b", "c", "d"], device="cpu")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_4k(mode: str, model_path: str | None) -> dict:
    """Run in a fresh process: one 3840x2160 stylization, ``mode`` = 'tiled' (the default policy) or 'whole'."""
    model = _model(model_path)
    x = torch.rand(1, 3, 2160, 3840)
    w = model.weights(0)
    before = _rss_mb()
    start = time.perf_counter()
    model.stylize_tensor(x, w, stroke="native", tile=0 if mode == "whole" else None)
    seconds = time.perf_counter() - start
    return {"mode": mode, "seconds": seconds, "rss_before_mb": before, "peak_mb": _peak_mb(), "growth_mb": _peak_mb() - before}


def _in_subprocess(mode: str, model_path: str | None) -> dict:
    code = f"import json, benchmarks.tiling as b; print(json.dumps(b.measure_4k({mode!r}, {model_path!r})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default=None, help="a model file (default: a random width-1.0 network)")
    parser.add_argument("--tile", type=int, default=256, help="tile side for the 1024x1024 comparison")
    parser.add_argument("--whole-4k", action="store_true", help="also time the untiled 3840x2160 pass (needs ~8 GB)")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())

    model = _model(args.model)
    torch.manual_seed(1)
    x = torch.rand(1, 3, 1024, 1024)
    w = model.weights(1)
    model.stylize_tensor(x[..., :256, :256], w, stroke="native")  # warm-up
    t = time.perf_counter()
    whole = model.stylize_tensor(x, w, stroke="native", tile=0)
    t_whole = time.perf_counter() - t
    t = time.perf_counter()
    tiled = model.stylize_tensor(x, w, stroke="native", tile=args.tile)
    t_tiled = time.perf_counter() - t
    mse = (whole - tiled).square().mean().item()
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "1024": {
            "whole_s": t_whole,
            "tiled_s": t_tiled,
            "tile": args.tile,
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(1 / mse),
            "max_abs_diff": (whole - tiled).abs().max().item(),
        },
        "4k": [_in_subprocess("tiled", args.model)] + ([_in_subprocess("whole", args.model)] if args.whole_4k else []),
    }
    r = results["1024"]
    print(f"1024x1024: whole {r['whole_s']:.2f} s, tiled ({r['tile']} px) {r['tiled_s']:.2f} s, PSNR {r['psnr_db']:.1f} dB, max |diff| {r['max_abs_diff']:.2e}")
    print("\n| 3840x2160, CPU | time (s) | peak RSS (GB) | growth during the call (GB) |\n|---|---|---|---|")
    for row in results["4k"]:
        print(f"| {row['mode']} | {row['seconds']:.1f} | {row['peak_mb'] / 1024:.2f} | {row['growth_mb'] / 1024:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
