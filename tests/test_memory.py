"""Freed memory kept for reuse on glibc (cin_style.inference.memory), measured by real page faults."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")

# Allocate, write and free a 64 MB tensor ten times, after one warm-up; print the page faults.
SCRIPT = """
import resource, torch
from cin_style.inference.memory import keep_freed_memory
from cin_style import StyleModel, StyleTransformer
if {through_model}:
    StyleModel(StyleTransformer(num_styles=1, width=0.25), ["a"], device="cpu")
else:
    keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(16 * 2**20)
before = faults()
for _ in range(10):
    torch.ones(16 * 2**20)
print(keep_freed_memory(), faults() - before)
"""
PAGES = 10 * 64 * 2**20 // 4096  # the pages ten fresh 64 MB blocks fault in


def _faults(through_model: bool, keep: str) -> tuple[str, int]:
    # Without huge pages: importing cin_style.cli (as other tests do) sets THP_MEM_ALLOC_ENABLE=1
    # in this process, and on 2 MB pages a 64 MB block faults in only 32 times either way.
    env = {**os.environ, "CIN_STYLE_KEEP_MEMORY": keep, "THP_MEM_ALLOC_ENABLE": "0"}
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(through_model=through_model)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    setting, count = r.stdout.split()
    return setting, int(count)


def test_a_cpu_model_makes_large_blocks_reuse_freed_pages():
    setting, count = _faults(True, "1")  # StyleModel on a CPU applies it: blocks come back to be reused
    assert setting == "True" and count <= PAGES // 5  # at most two of the ten blocks fault in (0 or 1 measured)
    setting, count = _faults(False, "0")  # switched off: malloc as it is, every block mmapped afresh
    assert setting == "False" and count > PAGES // 2
