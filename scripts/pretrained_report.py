"""Write docs/pretrained.md from the outputs of scripts/device_pretrained.sh (run there or here).

    python scripts/pretrained_report.py --out OUT_FOLDER > docs/pretrained.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="the folder device_pretrained.sh wrote")
    args = parser.parse_args()
    out = Path(args.out)
    log = (out / "train.log").read_text(errors="replace")
    found = re.search(r"finished (\d+) steps in ([\d.]+) s(?: \(([\d.]+) images/s)?", log)
    steps, seconds = (int(found.group(1)), float(found.group(2))) if found else (0, 0.0)
    speed = float(found.group(3)) if found and found.group(3) else None
    report = json.loads((out / "eval" / "paintings.json").read_text())
    batch = 16
    lines = [
        "# The bundled paintings network",
        "",
        f"Trained on {(out / 'gpu.txt').read_text().strip()}.",
        "",
        f"- command: `{(out / 'command.txt').read_text().strip()}`",
        f"- steps: {steps} of the CIN paper's 40,000 (batch {batch}, 256 px crops), in {seconds:.0f} s of `trainer.fit` "
        f"(set-up and validation included); {speed:.0f} training images/s after warm-up" if speed else f"- steps: {steps} in {seconds:.0f} s",
        f"- model file: `cin_style/models/paintings.safetensors`, float16, {(out / 'paintings.safetensors').stat().st_size / 1e6:.1f} MB",
        "",
        "Evaluation (`cin-style evaluate` on the 24 Kodak photos, 256 px, the training losses):",
        "",
        (out / "eval" / "paintings.md").read_text().strip(),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
