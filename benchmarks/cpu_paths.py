"""Which way of running the network is fastest on a CPU: one image, PIL image in, PIL image out.

Each (path, size) runs in its own process, so that its peak memory (``ru_maxrss``) is its own:
one warm-up call, then the median of ``--repeats`` timed calls. Every path's output is compared
with PyTorch float32's (PSNR on the 8-bit images), and the reference network of
pytorch/examples' ``fast_neural_style`` (``benchmarks/reference.py``, eager float32, random
weights: only its speed matters) runs in the same way.

    python -m benchmarks.cpu_paths --model cin_style/models/paintings.safetensors --out runs/bench/cpu_paths.json

Paths: ``pytorch`` (float32 eager with PyTorch's direct convolutions, ``--engine torch``; the
tiles' memory bound above 2 megapixels), ``default`` (``engine="auto"``, what ``StyleModel`` and
``cin-style stylize`` do on this CPU: one of the next two), ``pytorch-nnpack`` (float32 with
NNPACK's Winograd and FFT convolutions, :mod:`cin_style.network.fastconv`), ``pytorch-bf16`` (bfloat16
autocast with PyTorch's direct convolutions; fast only where the CPU has native bfloat16),
``pytorch-compile`` (``torch.compile``, float32), ``onnxruntime`` (the exported graph,
float32), ``onnxruntime-int8`` (its weights quantized dynamically), ``reference``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As the cin-style command does (cin_style/cli.py): PyTorch's CPU allocator on huge pages. Set
# before PyTorch is imported, and inherited by every child process, the reference's too.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np
from PIL import Image

SIZES = {"512x512": (512, 512), "1920x1080": (1920, 1080)}
PATHS = ["pytorch", "default", "pytorch-nnpack", "pytorch-bf16", "pytorch-compile", "onnxruntime", "onnxruntime-int8", "reference"]
#: Paths too slow or too costly to compile at every size on a 2-core CPU: measured at 512x512 only.
SMALL_ONLY = {"pytorch-bf16", "pytorch-compile"}
STYLE = 3


def _photo(size: tuple[int, int]) -> Image.Image:
    from cin_style.inference.style_model import demo_photo_path

    return Image.open(demo_photo_path()).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _runner(path: str, model_file: Path, onnx_file: Path):
    """A function PIL -> PIL for ``path``."""
    if path == "reference":
        import torch

        from benchmarks.reference import TransformerNet
        from cin_style.io.images import to_pil, to_tensor

        net = TransformerNet().eval()
        torch.set_grad_enabled(False)
        return lambda image: to_pil((net(to_tensor(image)[None] * 255) / 255).clamp(0, 1)[0])
    if path.startswith("onnxruntime"):
        from cin_style.inference.onnx_model import OnnxStyleModel

        model = OnnxStyleModel.load(onnx_file if path == "onnxruntime" else onnx_file.with_suffix(".int8.onnx"))
        return lambda image: model.stylize(image, STYLE)
    from cin_style.inference.style_model import StyleModel

    # The two paths engine="auto" chooses between on a CPU (nnpack, bf16), each forced.
    engine = {"pytorch": "torch", "pytorch-compile": "torch", "pytorch-nnpack": "nnpack", "pytorch-bf16": "bf16"}.get(path, "auto")
    model = StyleModel.load(model_file, device="cpu", engine=engine)
    if path == "pytorch-compile":
        model.accelerate(dtype=None, channels_last=False)
    return lambda image: model.stylize(image, STYLE)


def child(path: str, size: str, model_file: Path, onnx_file: Path, repeats: int, out: Path) -> None:
    photo = _photo(SIZES[size])
    run = _runner(path, model_file, onnx_file)
    start = time.perf_counter()
    result = run(photo)  # warm-up (compilation, first allocations)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run(photo)
        times.append(time.perf_counter() - start)
    result.save(out / f"{path}-{size}.png")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"path": path, "size": size, "seconds": statistics.median(times), "first": first, "peak_bytes": peak}))


def _psnr(a: Path, b: Path) -> float:
    x, y = (np.asarray(Image.open(p), dtype=np.float64) for p in (a, b))
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def prepare_onnx(model_file: Path, folder: Path) -> Path:
    """The model exported to ONNX, and its int8 twin (weights quantized, activations dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_file = folder / "model.onnx"
    subprocess.run([str(Path(sys.executable).parent / "cin-style"), "export", str(model_file), "-o", str(onnx_file)], check=True, capture_output=True)
    quantize_dynamic(str(onnx_file), str(onnx_file.with_suffix(".int8.onnx")), weight_type=QuantType.QUInt8)
    return onnx_file


def markdown(rows: list[dict]) -> str:
    lines = ["| size | path | seconds (median) | first call | peak memory (GB) | PSNR vs PyTorch float32 (dB) | speed vs reference |", "|---|---|---|---|---|---|---|"]
    for size in SIZES:
        ref = next((r["seconds"] for r in rows if r["size"] == size and r["path"] == "reference"), None)
        for r in (r for r in rows if r["size"] == size):
            psnr = "—" if r["psnr"] is None else ("exact" if r["psnr"] == float("inf") else f"{r['psnr']:.1f}")
            speed = f"{ref / r['seconds']:.2f}x" if ref else "—"
            lines.append(f"| {size} | {r['path']} | {r['seconds']:.3f} | {r['first']:.2f} | {r['peak_bytes'] / 1e9:.2f} | {psnr} | {speed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cin_style/models/paintings.safetensors")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--out", default="runs/bench/cpu_paths.json")
    p.add_argument("--child", nargs=4, metavar=("PATH", "SIZE", "ONNX", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        path, size, onnx_file, folder = args.child
        child(path, size, Path(args.model), Path(onnx_file), args.repeats, Path(folder))
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        onnx_file = prepare_onnx(Path(args.model), folder)
        rows = []
        for size in args.sizes.split(","):
            for path in args.paths.split(","):
                if path in SMALL_ONLY and size != "512x512":
                    continue
                cmd = [sys.executable, "-m", "benchmarks.cpu_paths", "--model", args.model, "--repeats", str(args.repeats), "--child", path, size, str(onnx_file), tmp]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"{path} {size}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(r.stdout.strip().splitlines()[-1])
                baseline = folder / f"pytorch-{size}.png"
                row["psnr"] = _psnr(folder / f"{path}-{size}.png", baseline) if baseline.exists() and path != "reference" else None
                rows.append(row)
                print(f"{size} {path}: {row['seconds']:.3f} s, peak {row['peak_bytes'] / 1e9:.2f} GB", file=sys.stderr)
    out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    table = markdown(rows)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
