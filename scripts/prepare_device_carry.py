"""Fill .carry/ (git-ignored) with what the GPU machine needs and cannot download.

    python scripts/prepare_device_carry.py

* .carry/wheels/: hydra-core, omegaconf and antlr4-python3-runtime (pure Python);
* .carry/vgg16_relu4_3.safetensors: the VGG-16 conv weights up to relu4_3 (all the loss uses),
  from the project cache, about 29 MB instead of 57;
* .carry/data/: the shared paintings, training photos, Kodak photos and MANIFEST.csv.

The device machine accepts 64 MiB of carried files in all; this stays under 45 MB.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".carry"


def main() -> int:
    from safetensors.torch import save_file

    from cin_style.losses.vgg import resolve_vgg16_weights

    CARRY.mkdir(exist_ok=True)
    wheels = CARRY / "wheels"
    if not any(wheels.glob("*.whl")):
        # pip wheel (not download): antlr4 comes as a source archive, and the GPU machine may lack the tools to build it.
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), "hydra-core==1.3.2", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3"], check=True)
    weights = resolve_vgg16_weights()
    state = weights.state_dict
    keep = {k: v.contiguous() for k, v in state.items() if int(k.split(".")[1]) <= 21}  # conv4_3 is features.21
    save_file(keep, str(CARRY / "vgg16_relu4_3.safetensors"))
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if (CARRY / "data").exists():
        shutil.rmtree(CARRY / "data")
    shutil.copytree(data, CARRY / "data", ignore=shutil.ignore_patterns("*.md"))
    total = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"{CARRY}: {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
