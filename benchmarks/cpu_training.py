"""CPU training speed of the settings `experiment=paintings_cpu` could use, in one process.

    THP_MEM_ALLOC_ENABLE=1 python -m benchmarks.cpu_training [--repeats 3] [--json out.json]

Every row is one :class:`cin_style.StyleTransferModule` training step (21 styles: 20 paintings
and the identity row; forward, backward and Adam update) on the same photos with the same
drawn styles, timed after a warm-up step, the rows interleaved round by round so that a busy
neighbour on a shared VM slows them all alike. The loss of the first timed step is reported
beside the speed, so a faster setting that computes a different loss shows.

Rows, at the acceptance setting 256 px, batch 4, then the crop size the experiment uses:

* ``fp32, full photo pass`` — float32, NCHW, the photo's VGG-16 pass run to relu4_3 as it
  was before this benchmark (the reference: "today's fp32 CPU training");
* ``fp32`` — float32, the photo's pass stopped at the content layer (relu3_3);
* ``fp32 + channels-last``;
* ``bf16 autocast`` and ``bf16 autocast + channels-last`` — the GPU recipe; on a CPU without
  AVX-512 BF16 or AMX every bf16 convolution runs through a slow path;
* ``fp32, 128 px batch 8`` — the experiment's first-stage crops (images/s per crop size).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from cin_style.io.paintings import load_center_crops, load_style_image
from cin_style.network.fastconv import native_bf16
from cin_style.io.images import find_images
from cin_style.training.module import StyleTransferModule
from cin_style.network.styles import IDENTITY


@dataclass
class Row:
    name: str
    size: int
    batch: int
    precision: str = "fp32"
    channels_last: bool = False
    full_photo_pass: bool = False


ROWS = [
    Row("fp32, full photo pass (before)", 256, 4, full_photo_pass=True),
    Row("fp32", 256, 4),
    Row("fp32 + channels-last", 256, 4, channels_last=True),
    Row("bf16 autocast", 256, 4, precision="bf16"),
    Row("bf16 autocast + channels-last", 256, 4, precision="bf16", channels_last=True),
    Row("fp32, 128 px batch 8", 128, 8),
]


def make_module(paintings: dict[str, torch.Tensor], channels_last: bool) -> StyleTransferModule:
    torch.manual_seed(0)
    module = StyleTransferModule(style_names=[*paintings, IDENTITY], channels_last=channels_last)
    module.set_style_targets(paintings)
    return module


def step(module: StyleTransferModule, optimizer: torch.optim.Optimizer, photos: torch.Tensor, styles: torch.Tensor, row: Row) -> float:
    """One training step as ``StyleTransferModule.training_step`` runs it; the loss value."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=row.precision == "bf16"):
        if row.full_photo_pass:  # the photo's VGG-16 features to relu4_3, as before
            with torch.no_grad():
                full = module.loss.vgg(photos.contiguous(memory_format=torch.channels_last) if row.channels_last else photos)
            output = module.transformer(photos, torch.nn.functional.one_hot(styles, module.num_styles).float())
            terms = module.loss(output, photos, styles, content_features=full)
        else:
            terms = module.score(photos, styles)
        loss = terms.total.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per row (bf16 rows take one: they are slow)")
    parser.add_argument("--only", default=None, help="comma-separated row numbers (0-based)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = ROWS if args.only is None else [ROWS[int(i)] for i in args.only.split(",")]

    root = __import__("pathlib").Path(args.data_root)
    paintings = {p.stem: load_style_image(p, 256) for p in find_images(root / "styles")}
    files = find_images(root / "content" / "train")
    photos = {size: load_center_crops(files[:8], size) for size in {r.size for r in rows}}
    modules = {cl: make_module(paintings, cl) for cl in {r.channels_last for r in rows}}
    state = {cl: {k: v.clone() for k, v in m.transformer.state_dict().items()} for cl, m in modules.items()}

    times: dict[str, list[float]] = {r.name: [] for r in rows}
    losses: dict[str, float] = {}
    rounds = max(2, args.repeats + 1)
    for r in range(rounds):
        for row in rows:
            if row.precision == "bf16" and r > 1 and not native_bf16():
                continue  # one warm-up and one timed step: each takes minutes without native bf16
            module = modules[row.channels_last]
            module.transformer.load_state_dict(state[row.channels_last])  # every row steps from the same weights
            optimizer = torch.optim.Adam(module.transformer.parameters(), lr=1e-3)
            batch = photos[row.size][: row.batch]
            styles = torch.arange(row.batch) % (module.num_styles - 1)
            start = time.perf_counter()
            loss = step(module, optimizer, batch, styles, row)
            elapsed = time.perf_counter() - start
            if r == 0:
                losses[row.name] = loss
            else:
                times[row.name].append(elapsed)
            print(f"round {r} {row.name}: {elapsed:.2f} s, loss {loss:.4f}", file=sys.stderr, flush=True)

    base = next((r for r in rows if r.full_photo_pass), rows[0])
    base_ips = base.batch / statistics.median(times[base.name])
    results = []
    for row in rows:
        seconds = statistics.median(times[row.name])
        ips = row.batch / seconds
        results.append({
            "row": row.name, "size": row.size, "batch": row.batch, "seconds_per_step": seconds, "images_per_second": ips,
            "speedup": ips / base_ips, "loss": losses[row.name],
        })  # fmt: skip
    cpu = {
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
        "amx": torch.cpu._is_amx_tile_supported(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
    print(f"CPU: {cpu}")
    print("| setting | crop, batch | s/step | images/s | vs. before | loss of the first step |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['row']} | {r['size']} px, {r['batch']} | {r['seconds_per_step']:.2f} | {r['images_per_second']:.3f} | "
              f"{r['speedup']:.2f}x | {r['loss']:.4f} |")  # fmt: skip
    if args.json:
        __import__("pathlib").Path(args.json).write_text(json.dumps({"cpu": cpu, "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
