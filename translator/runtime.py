"""Process-level CPU tuning applied by the `translator` entry point."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc(mmap_threshold: int = 1 << 30) -> bool:
    """Keep large tensors on glibc's heap instead of fresh mmap'd pages.

    By default glibc serves allocations over 32 MiB with mmap and unmaps them on free, so every
    training step page-faults and zero-fills its (N, V) logits and their gradients again. Raising
    the thresholds lets freed memory be reused: on the 2-core dev machine this cut
    F.cross_entropy fwd+bwd on (6000, 8000) bf16 logits from 0.55 s to 0.18 s and exp() on
    48M floats from 0.21 s to 0.07 s (see benchmarks/speed.py). No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
