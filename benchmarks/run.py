"""The benchmark suite: cin-style against the reference network, in one run.

    python -m benchmarks.run [--device cpu|cuda] [--quick] [--json results.json] [--only inference,training,styles,pixels]

Rows (each measured in a fresh process, so that peak memory is that row's own):

* ``inference``: images/s at 512x512 (batch 8), 1024x1024 (batch 4) and 3840x2160 (batch 1),
  and peak memory, for ours and for the reference;
* ``training``: images/s of a training step at 256x256, batch 16, with the full VGG-16 loss
  (content + 4 style layers), forward, backward and optimizer update, ours and reference;
* ``styles``: our training step with N = 1, 8 and 32 styles (the cost must not grow with N);
* ``pixels``: our inference time per megapixel from 256x256 to 2048x2048, whole-image passes
  (it must stay flat).

"Ours" is the product path: :meth:`cin_style.StyleModel.stylize_tensor` (which tiles 4K
frames on a CPU) and :class:`cin_style.StyleTransferModule`'s training step; on CUDA with
:meth:`~cin_style.StyleModel.accelerate` (bfloat16, channels-last, torch.compile) and the GPU
experiments' settings. "Reference" is pytorch/examples' fast_neural_style as it runs
(:mod:`benchmarks.reference`): eager float32.

Timing: warm-up runs, then the median of repeated runs (CUDA events on a GPU). TFLOP/s counts
the convolutions' nominal work, the same for both networks: 153,792 multiply-adds per pixel
for the transformer (counted by :mod:`torch.utils.flop_counter` on the reference), and for a
training step the VGG-16 forward and backward passes as well. Our decoder does 2.25x fewer
multiply-adds than that nominal count (see :func:`cin_style.network.phase.upsample_conv3x3`), so its
"achieved" figure is nominal work per second. Peak memory is the process's peak resident set
on a CPU (PyTorch alone is about 0.6 GB of it) and ``max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from cin_style import StyleModel, StyleTransformer
from cin_style.losses.vgg import VGG16Features

from .reference import ReferenceTrainer, TransformerNet

INFERENCE = [(512, 512, 8), (1024, 1024, 4), (2160, 3840, 1)]
TRAIN_SIZE, TRAIN_BATCH = 256, 16
STYLE_COUNTS = [1, 8, 32]
PIXEL_SIDES = [256, 512, 1024, 2048]
STYLE_LAYERS = {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0}


# -- measuring ---------------------------------------------------------------------------


def _timer(device: torch.device, fn: Callable[[], object], *, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def conv_flops(fn: Callable[[], object]) -> int:
    """Convolution FLOPs (2 per multiply-add, forward and backward) of ``fn``, run on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    counts = counter.get_flop_counts()["Global"]
    return int(sum(v for op, v in counts.items() if "convolution" in str(op)))


def transformer_flops(height: int, width: int) -> int:
    """Nominal forward FLOPs of the transformer for one image (the reference network's count)."""
    with torch.device("meta"):
        net = TransformerNet()
        x = torch.empty(1, 3, height, width)
    return conv_flops(lambda: net(x))


def training_flops(size: int) -> int:
    """Nominal FLOPs of one image's training step: the reference step's forward and backward convolutions."""
    with torch.device("meta"):
        net = TransformerNet()
        vgg = VGG16Features(layers=STYLE_LAYERS, weights="random").features
        x = torch.empty(1, 3, size, size)

    def step() -> None:
        vgg(x)  # the photo's forward pass (no gradient flows through it)
        vgg(net(x)).sum().backward()

    return conv_flops(step)


# -- one row, in its own process ------------------------------------------------------------


def random_styles(net: StyleTransformer) -> StyleTransformer:
    """Random gamma/beta: the cost of a pass does not depend on what the network has learnt."""
    torch.manual_seed(0)
    with torch.no_grad():
        for norm in net.norms():
            norm.gamma.normal_(1.0, 0.5)
            norm.beta.normal_(0.0, 0.5)
    return net


def _inference(spec: dict, device: torch.device) -> dict:
    h, w, b = spec["height"], spec["width"], spec["batch"]
    x = torch.rand(b, 3, h, w, device=device)
    if spec["impl"] == "reference":
        net = TransformerNet().to(device).eval()
        x = x * 255

        @torch.inference_mode()
        def run() -> object:
            return net(x)
    else:
        model = StyleModel(random_styles(StyleTransformer(num_styles=spec.get("styles", 4))), list("abcd"), device=device)
        if device.type == "cuda":
            model.accelerate()
        # A new style or blend on every call: the compiled GPU path must not recompile for them.
        looks = ["a", "a=0.3,b=0.7", "c", "b=0.5,c=0.25,d=0.25"]
        weights = [model.weights(looks[i % len(looks)]) for i in range(spec["warmup"] + spec["repeats"])]
        calls = iter(weights)

        tile = spec.get("tile")  # None: the product's own policy (tiles for a 4K frame on a CPU)

        def run() -> object:
            return model.stylize_tensor(x, next(calls), stroke="native", tile=tile)  # the network itself, over every pixel

    times = _timer(device, run, warmup=spec["warmup"], repeats=spec["repeats"])
    return {"seconds": times, "peak_bytes": _peak_bytes(device)}


def _vgg(device: torch.device) -> VGG16Features:
    return VGG16Features(layers=STYLE_LAYERS, weights=None).to(device)


def _training(spec: dict, device: torch.device) -> dict:
    size, b = spec["size"], spec["batch"]
    torch.manual_seed(0)
    photos = torch.rand(b, 3, size, size, device=device)
    if spec["impl"] == "reference":
        trainer = ReferenceTrainer(vgg=_vgg(device), style_image=torch.rand(1, 3, size, size, device=device))
        x = photos * 255

        def run() -> object:
            return trainer.step(x)
    else:
        from cin_style.training.module import StyleTransferModule  # Lightning: imported only where needed, not in inference rows

        n = spec.get("styles", 1)
        fast = device.type == "cuda"
        module = StyleTransferModule(
            style_names=[f"s{i}" for i in range(n)],
            loss={"content_layers": {"relu2_2": 1.0}, "style_layers": STYLE_LAYERS},  # the real VGG-16, as _vgg builds it
            channels_last=fast,
            compile=fast,
        ).to(device)
        module.set_style_targets([torch.rand(3, size, size) for _ in range(n)])
        optimizer = module.configure_optimizers()
        steps = iter(range(10**9))

        def run() -> object:
            # Lightning's automatic optimization, without the Trainer around it.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                loss = module.training_step(photos, next(steps))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

    times = _timer(device, run, warmup=spec["warmup"], repeats=spec["repeats"])
    return {"seconds": times, "peak_bytes": _peak_bytes(device)}


def child(spec: dict) -> dict:
    device = torch.device(spec["device"])
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # the reference is float32
    import warnings

    warnings.filterwarnings("ignore", message=".*self.log.*")  # training_step logs; there is no Trainer here
    return _inference(spec, device) if spec["kind"] == "inference" else _training(spec, device)


def _run_child(spec: dict) -> dict:
    # Both networks run with the allocator setting the command line uses (huge pages for large
    # CPU tensors, see cin_style/cli.py), so the comparison is like for like.
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "1")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--child", json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the suite ---------------------------------------------------------------------------


def _row(spec: dict, images: int, flops_per_call: int) -> dict:
    result = _run_child(spec)
    if "error" in result:
        print(f"  {spec['kind']} {spec['impl']}: failed: {result['error']}", file=sys.stderr)
        return {**spec, **result}
    median = statistics.median(result["seconds"])
    row = {
        **spec,
        "median_s": median,
        "images_per_s": images / median,
        "tflops": flops_per_call / median / 1e12,
        "peak_gb": result["peak_bytes"] / 2**30,
        "seconds": result["seconds"],
    }
    print(f"  {spec['kind']:9s} {spec['impl']:9s} {_shape(spec):>16s}: {row['images_per_s']:9.3f} img/s  {row['peak_gb']:6.2f} GB", file=sys.stderr)
    return row


def _shape(spec: dict) -> str:
    if spec["kind"] == "inference":
        return f"{spec['width']}x{spec['height']} b{spec['batch']}"
    return f"{spec['size']}^2 b{spec['batch']} N={spec.get('styles', 1)}"


def suite(device: str, quick: bool, only: set[str], repeats: int | None = None) -> dict:
    cpu = device == "cpu"
    warmup, default_repeats = (1, 2) if quick else ((1, 3) if cpu else (10, 30))
    repeats = repeats or default_repeats
    base = {"device": device, "warmup": warmup, "repeats": repeats}
    rows: dict[str, list[dict]] = {}

    if "inference" in only:
        rows["inference"] = []
        for h, w, b in INFERENCE:
            if quick and cpu:
                b = 1
            for impl in ("ours", "reference"):
                spec = {**base, "kind": "inference", "impl": impl, "height": h, "width": w, "batch": b}
                rows["inference"].append(_row(spec, b, b * transformer_flops(h, w)))

    batch = 4 if quick and cpu else TRAIN_BATCH
    step_flops = batch * training_flops(TRAIN_SIZE)
    if "training" in only:
        rows["training"] = [
            _row({**base, "kind": "training", "impl": impl, "size": TRAIN_SIZE, "batch": batch}, batch, step_flops)
            for impl in ("ours", "reference")
        ]
    if "styles" in only:
        rows["styles"] = [
            _row({**base, "kind": "training", "impl": "ours", "size": TRAIN_SIZE, "batch": batch, "styles": n}, batch, step_flops)
            for n in STYLE_COUNTS
        ]
    if "pixels" in only:
        sides = PIXEL_SIDES[:3] if quick and cpu else PIXEL_SIDES
        rows["pixels"] = []
        for side in sides:
            # Whole-image passes (tile=0): the network's own cost growth, not the tiler's.
            spec = {**base, "kind": "inference", "impl": "ours", "height": side, "width": side, "batch": 1, "tile": 0}
            row = _row(spec, 1, transformer_flops(side, side))
            if "median_s" in row:
                row["seconds_per_megapixel"] = row["median_s"] / (side * side / 1e6)
            rows["pixels"].append(row)
    return rows


def ratios(rows: dict[str, list[dict]]) -> list[dict]:
    """Ours / reference throughput for every row measured for both."""
    out = []
    for kind in ("inference", "training"):
        pairs: dict[str, dict[str, dict]] = {}
        for row in rows.get(kind, []):
            pairs.setdefault(_shape(row), {})[row["impl"]] = row
        for shape, pair in pairs.items():
            if "images_per_s" in pair.get("ours", {}) and "images_per_s" in pair.get("reference", {}):
                out.append({"kind": kind, "shape": shape, "ratio": pair["ours"]["images_per_s"] / pair["reference"]["images_per_s"]})
    return out


def markdown(results: dict) -> str:
    rows = results["rows"]
    lines = [f"{results['date']} · {results['machine']} · torch {results['torch']} · `{results['command']}`"]
    if rows.get("inference") or rows.get("training"):
        lines += [
            "",
            "| row | shape | ours img/s | reference img/s | ours / ref | ours TFLOP/s | ref TFLOP/s | ours peak GB | ref peak GB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for kind in ("inference", "training"):
        pairs: dict[str, dict[str, dict]] = {}
        for row in rows.get(kind, []):
            pairs.setdefault(_shape(row), {})[row["impl"]] = row
        for shape, pair in pairs.items():
            o, r = pair.get("ours", {}), pair.get("reference", {})
            cell = lambda d, k, f: f.format(d[k]) if k in d else "failed"  # noqa: E731
            ratio = f"{o['images_per_s'] / r['images_per_s']:.2f}" if "images_per_s" in o and "images_per_s" in r else "-"
            lines.append(
                f"| {kind} | {shape} | {cell(o, 'images_per_s', '{:.3f}')} | {cell(r, 'images_per_s', '{:.3f}')} | {ratio} | "
                f"{cell(o, 'tflops', '{:.3f}')} | {cell(r, 'tflops', '{:.3f}')} | {cell(o, 'peak_gb', '{:.2f}')} | {cell(r, 'peak_gb', '{:.2f}')} |"
            )
    if rows.get("styles"):
        lines += ["", "| styles N | ours step (s) | img/s |", "|---|---|---|"]
        lines += [f"| {r['styles']} | {r.get('median_s', float('nan')):.3f} | {r.get('images_per_s', float('nan')):.3f} |" for r in rows["styles"]]
    if rows.get("pixels"):
        lines += ["", "| size | ours (s) | s per megapixel |", "|---|---|---|"]
        lines += [f"| {r['width']}x{r['height']} | {r.get('median_s', float('nan')):.3f} | {r.get('seconds_per_megapixel', float('nan')):.3f} |" for r in rows["pixels"]]
    return "\n".join(lines)


def _machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (and batch 1 / 4 and no 2048^2 on a CPU): minutes, not tens of minutes")
    parser.add_argument("--only", default="inference,training,styles,pixels", help="comma-separated subset of the rows")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 3 on a CPU, 30 on a GPU; 2 with --quick)")
    parser.add_argument("--json", help="write every measurement here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    only = set(args.only.split(","))
    unknown = only - {"inference", "training", "styles", "pixels"}
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": _machine(args.device),
        "torch": torch.__version__,
        "command": command.strip(),
        "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "1"),
        "rows": suite(args.device, args.quick, only, args.repeats),
    }
    results["ratios"] = ratios(results["rows"])
    results["markdown"] = markdown(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print(results["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
