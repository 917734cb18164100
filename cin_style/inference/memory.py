"""Keep freed memory for reuse: the page faults of CPU inference.

glibc's ``malloc`` serves every block over 32 MB (and, until it has seen some frees, every
block over 128 kB) with a fresh ``mmap`` and returns it to the kernel on ``free``. A network
run on a 512 px image allocates and frees such blocks at every layer (one 32-channel map at
512x512 is 32 MB), so every layer writes into new pages, and the kernel must fault in and zero
each page first: about 130,000 page faults per 512 px image, and a 512 px image took about
a sixth longer on this project's 2-core machine. Asking ``malloc`` to take large blocks from
its heap and to keep freed memory (``mallopt``: no mmap, no trimming) lets each layer reuse
the pages the previous one freed.

The command line gets most of this another way: it sets ``THP_MEM_ALLOC_ENABLE=1`` before
PyTorch loads, so large tensors sit on 2 MB pages (512 times fewer faults). PyTorch reads that
variable once, when it is imported, so a script or notebook that imported ``torch`` before
``cin_style`` cannot have it; this setting works whenever it is made.

It is a process-wide setting, so it is applied only where this package runs the network on a
CPU (:class:`~cin_style.inference.style_model.StyleModel`) and only once; its cost is that the process keeps its
peak memory until it exits instead of handing freed blocks back. ``CIN_STYLE_KEEP_MEMORY=0``
leaves ``malloc`` as it is. Other C libraries (macOS, Windows, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

__all__ = ["keep_freed_memory", "M_MMAP_MAX", "M_TRIM_THRESHOLD"]

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` serve large blocks from its heap and keep what is freed (see the
    module). Returns whether the setting is in force: False off glibc, or with
    ``CIN_STYLE_KEEP_MEMORY=0``."""
    if os.environ.get("CIN_STYLE_KEEP_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. The trim threshold is an int: 2 GB is its largest value.
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
