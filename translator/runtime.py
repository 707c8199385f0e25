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


_BF16_FAST: bool | None = None


def cpu_bf16_is_fast() -> bool:
    """Whether bf16 matrix products run faster than float32 on this CPU (measured once, ~0.1 s).

    CPUs with AVX-512 bf16 or AMX run bf16 autocast several times faster than float32; CPUs with
    only AVX2 emulate it. Measured on the AVX2-only AMD EPYC dev box: a (2048, 256) x (256, 1024)
    product took 26 ms in float32 and 1,077 ms under bf16 autocast, 40x slower, so bf16-mixed
    training there would take weeks instead of hours.
    """
    global _BF16_FAST
    if _BF16_FAST is None:
        import time

        import torch

        a, b = torch.randn(512, 256), torch.randn(256, 512)
        timings = {}
        for dtype in (torch.float32, torch.bfloat16):
            x, y = a.to(dtype), b.to(dtype)
            x @ y  # warm-up
            start = time.perf_counter()
            for _ in range(3):
                x @ y
            timings[dtype] = time.perf_counter() - start
        _BF16_FAST = timings[torch.bfloat16] < timings[torch.float32]
    return _BF16_FAST
