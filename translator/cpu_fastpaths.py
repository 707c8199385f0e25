"""CPU fast paths: library calls replaced on CPU by equivalents that measured faster, all in one place.

Models and the loss are written with the textbook names and get the fast path from here:

    name                            stands for                          on CPU
    Dropout, dropout                nn.Dropout, F.dropout               masks from random bytes
    scaled_dot_product_attention    F.scaled_dot_product_attention      explicit matmul + softmax in training
    CompiledOnCPU(fn)               fn                                  torch.compile'd
    tune_malloc()                   (process level, by the entry point) glibc reuses large freed blocks
    limit_primitive_cache()         (process level, bf16 training)      oneDNN keeps 8 compiled shapes, not 1,024
    HeapTrim().after_step()         (a callback, every CPU training)    the heap's holes go back when they grow
    cpu_bf16_is_fast()              (a probe, by the entry point)       bf16 only where the CPU has it

On other devices each is the library call unchanged. `ENABLED` is the one switch, on unless the
environment sets TRANSLATOR_CPU_FASTPATHS=0: off, the first three are the plain library call and
tune_malloc and HeapTrim do nothing, to measure what they gain or to rule them out. Each gain below was
measured on the 2-core AVX2 AMD EPYC dev box with `benchmarks/speed.py` (shares of a step with
its torch.profiler run, `--profile`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
import time
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENABLED = os.environ.get("TRANSLATOR_CPU_FASTPATHS", "1") != "0"


def _on_cpu(x: Tensor) -> bool:
    """Whether `x` takes the fast paths: they are on and it lives on the CPU."""
    return ENABLED and x.device.type == "cpu"


# ---- dropout with byte masks ---------------------------------------------------------------------
# On CPU, `F.dropout` draws one Bernoulli sample per element from the (sequential) Mersenne Twister at
# 12-18 ns each; in a bf16 Transformer training step on two cores that was 19% of the time. Drawing one
# random byte per element and keeping it when it is >= round(256 p) costs about a quarter of that. The
# price: p is rounded to a multiple of 1/256 (0.1 -> 0.1016, 0.3 -> 0.3008), and kept values are scaled
# by 1 / (1 - that rounded p), so the layer stays unbiased. Seeding `torch.manual_seed` makes the masks
# reproducible as before.

LEVELS = 256  # one random byte per element


class _ByteMaskDropout(torch.autograd.Function):
    # The boolean mask is what backward keeps (1 byte per element, not a float mask's 4): in the shipped
    # Transformer's float32 step that is ~50 MB less held for backward (17 masks of (tokens, 256)), at the
    # same number of passes over memory (forward one fewer, backward one more).
    @staticmethod
    def forward(ctx, x: Tensor, threshold: int) -> Tensor:  # type: ignore[override]
        keep = torch.empty(x.shape, dtype=torch.uint8, device=x.device).random_() >= threshold  # (x.shape) bool
        ctx.scale = LEVELS / (LEVELS - threshold)  # kept values become x / (1 - p)
        ctx.save_for_backward(keep)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`F.dropout(x, p, training)`, with byte masks on CPU (p rounded to a multiple of 1/256)."""
    if not training or p == 0.0:
        return x
    threshold = round(p * LEVELS)
    if not _on_cpu(x) or not 0 < threshold < LEVELS:
        return F.dropout(x, p, training)
    return _ByteMaskDropout.apply(x, threshold)


class Dropout(nn.Dropout):
    """`nn.Dropout` (same argument, same state dict) using `dropout` above."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


# ---- attention -----------------------------------------------------------------------------------
# In CPU training the flash kernel's backward of `F.scaled_dot_product_attention` took 25% of a
# Transformer step (torch.profiler), and the explicit matmul + softmax below ran fwd+bwd 3-6x faster
# at Multi30k lengths (T ~ 32). Inference and other devices keep SDPA.

def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False) -> Tensor:
    """`F.scaled_dot_product_attention` with a boolean mask (True = attend); explicit in CPU training.

    q (B, H, T, Dh), k/v (B, H, S, Dh), attn_mask broadcastable to (B, H, T, S) -> (B, H, T, Dh).
    """
    if not _on_cpu(q) or not torch.is_grad_enabled():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)
    scores = (q @ k.transpose(-2, -1)) * (q.size(-1) ** -0.5)  # (B, H, T, S)
    if is_causal:
        T, S = scores.shape[-2:]
        attn_mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)  # (T, S)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = scores.softmax(-1)  # (B, H, T, S)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p, True)
    return weights @ v  # (B, H, T, Dh)


# ---- compiled functions --------------------------------------------------------------------------
# The label-smoothed loss (translator/training/loss.py) walks the (N, V) logits about ten times forward and
# backward when eager (casts, log-softmax, its backward, the smoothing term's dense gradient...): that
# was 20-35% of a bf16 Transformer training step with V = 8000. `torch.compile` fuses it into a few
# passes, about 3x faster.

class CompiledOnCPU:
    """`fn` through `torch.compile` when its first argument is a CPU tensor; eager elsewhere.

    Compiling needs a C++ compiler the first time (cached afterwards). If compiling or the compiled
    call fails (no compiler, an unsupported platform...), one warning, then eager from then on: the
    same formula, so the same values.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.compiled: Callable[..., Any] | None = None
        self.failed = False

    def __call__(self, x: Tensor, *args: Any) -> Any:
        if self.failed or not _on_cpu(x):
            return self.fn(x, *args)
        if self.compiled is None:
            self.compiled = torch.compile(self.fn, dynamic=True)
        try:
            return self.compiled(x, *args)
        except Exception as error:
            self.failed = True
            warnings.warn(f"torch.compile of {self.fn.__name__} failed ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:200]}); running it eagerly (same values, slower on CPU)",
                          stacklevel=3)
            return self.fn(x, *args)


# ---- process level: memory allocator and bf16 --------------------------------------------------

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: glibc malloc thresholds (bytes) set by tune_malloc: blocks under MMAP_THRESHOLD come from the heap and
#: are reused; a free heap top over TRIM_THRESHOLD goes back to the OS. Measured with
#: `python benchmarks/malloc.py` (benchmarks/RESULTS.md, "Memory allocator"): training the shipped
#: Transformer in bf16 (Zen 5), 32 MiB / 64 MiB ran 12% faster than 1 GiB / never trim with a quarter
#: less peak memory; with 1 GiB, long bf16 runs grew to 5.5-9.5 GB of mostly free heap (that 32 MiB keeps
#: a whole 20-epoch run flat is not yet measured).
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 64 << 20
#: The thresholds for float32 training on the CPU (as `fit` does without native bf16). Until issue 37 they were
#: 1 GiB / never trim, so that a step's (tokens, vocab) logits (131 MB) and their gradient were reused rather
#: than mmap'd and zero-filled each step (4% and 17% faster on a Zen 1 EPYC). The loss no longer makes them
#: (translator/training/loss.py); of the blocks left, those over 4 MiB (feed-forward activations, q/k/v, the loss's
#: chunks) are now mmap'd and the heap keeps the smaller ones. Shipped Transformer, Multi30k, 300 steps with
#: 5 validations, three float32 runs side by side on the Ice Lake Xeon (benchmarks/RESULTS.md, "Memory of a
#: training run"): peak 1,624 MiB at 2.241 CPU s per step (4 MiB), 1,663 at 2.241 (8 MiB), 1,709 at 2.210
#: (1 GiB): 85 MiB less for 1.4% more CPU. The heap's top is never trimmed here; HeapTrim below gives its
#: holes back.
FP32_MMAP_THRESHOLD, FP32_TRIM_THRESHOLD = 4 << 20, 2**31 - 1

#: Compiled oneDNN primitives kept per process when a training runs in bf16 on the CPU (oneDNN's default: 1,024).
#: bf16 matrix products on the CPU go through oneDNN, which caches each shape's compiled primitive together with
#: its buffers, and token-budget batches come in hundreds of shapes. bf16 on a Zen 4 EPYC, default against 8, side
#: by side (benchmarks/RESULTS.md, "bf16 training's memory: oneDNN's primitive cache"): chatbot-ko's whole run
#: peaked at 1,837 / 1,299 MiB (float32: 866) in 580.8 / 563.7 CPU s with the same val loss; DailyDialog's first 80
#: steps at 1.92 / 1.54 GB (heap in use 794 / 503 MB) at 12.6% more tokens per CPU second with 8.
BF16_PRIMITIVE_CACHE = 8
_PRIMITIVE_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Keep large tensors on glibc's heap instead of fresh mmap'd pages; called by the `translator` entry point.

    By default glibc's mmap threshold adapts upwards as blocks are freed, and blocks over it are
    mmap'd and unmapped on free, so a training step page-faults and zero-fills its activations and
    (N, V) logits again. Fixed thresholds let freed memory be reused (a 1 GiB threshold cut
    F.cross_entropy fwd+bwd on (6000, 8000) bf16 logits from 0.55 s to 0.18 s and exp() on 48M floats
    from 0.21 s to 0.07 s), and a finite trim threshold lets the heap shrink again. Called again with
    FP32_* when a training runs in float32 on the CPU (translator.cli). No-op off glibc (and with the fast paths
    off).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def limit_primitive_cache(capacity: int = BF16_PRIMITIVE_CACHE) -> bool:
    """Cap oneDNN's cache of compiled primitives for this process (BF16_PRIMITIVE_CACHE: what it saves).

    oneDNN reads the capacity from the environment once, when it compiles the process's first primitive, so this
    runs before the first bf16 product (`translator.cli` calls it for a bf16 training on the CPU, before the bf16
    probe). A capacity the environment already sets (ONEDNN_ or DNNL_PRIMITIVE_CACHE_CAPACITY) is the user's and
    stays. False where nothing was set (that case, or the fast paths off).
    """
    if not ENABLED or any(name in os.environ for name in _PRIMITIVE_CACHE_VARIABLES):
        return False
    os.environ[_PRIMITIVE_CACHE_VARIABLES[0]] = str(capacity)
    return True


def _libc() -> Any:
    """glibc, or None elsewhere (and with the fast paths off)."""
    if not ENABLED or not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def malloc_trim() -> bool:
    """glibc's `malloc_trim(0)`: every whole free page inside the heap, not only its top, goes back to the OS
    (RSS falls to what is allocated); the next allocations there page-fault them in again. False where
    there is no glibc (and with the fast paths off)."""
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "malloc_trim") and libc.malloc_trim(0) >= 0)


def resident_anonymous_bytes() -> int | None:
    """Resident memory of this process not backed by files (the heap, mmap'd blocks), from /proc; None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            _, resident, shared = (int(x) for x in f.read().split()[:3])
    except (OSError, ValueError):
        return None
    return (resident - shared) * os.sysconf("SC_PAGE_SIZE")


#: How much more than one training step has ever needed the heap may hold before `HeapTrim` gives its free
#: pages back. With the thresholds above glibc keeps every freed block for reuse (fast), but batches of many
#: shapes leave holes that the next shapes do not fit, so the heap only grows: float32 Transformer training on
#: Multi30k stood at 2.05 GB resident for 0.29 GB in use between steps (benchmarks/RESULTS.md, "Memory of a
#: training run"). Trimming costs the page faults that bring the pages back (~0.3 s of CPU per GB on the
#: Ice Lake Xeon VM), so it is done only when the holes reach this share of a step's need, not every step.
TRIM_SLACK = 0.25


class HeapTrim:
    """After every training step (`after_step`): `malloc_trim` when the resident memory exceeds (1 + slack) times
    the most that one step has needed, so the holes that batches of many shapes leave in glibc's heap stay bounded.

    A step's need is measured on the step after a trim, when the heap holds no free resident pages: the
    resident memory at its end is what the step touched (its live peak and the holes it made itself).
    """

    def __init__(self, slack: float | None = None) -> None:
        self.slack = TRIM_SLACK if slack is None else slack
        self.need = 0  # the most one step after a trim has needed, bytes (0: trim after the first step)
        self.measuring = False  # the step now ending began right after a trim
        self.trims = 0

    def after_step(self) -> bool:
        """Called between training steps (in use: weights, optimizer state); True when it trimmed."""
        resident = resident_anonymous_bytes()
        if resident is None:
            return False
        if self.measuring:
            self.need, self.measuring = max(self.need, resident), False
        if self.need and resident <= (1.0 + self.slack) * self.need:
            return False
        return self.trim()

    def trim(self) -> bool:
        """Give the heap's free pages back now (also after validation); the next step measures its need."""
        self.measuring = malloc_trim()
        self.trims += self.measuring
        return self.measuring


_BF16_FAST: bool | None = None


def cpu_bf16_is_fast() -> bool:
    """Whether bf16 matrix products run faster than float32 on this CPU (measured once, ~0.1 s).

    CPUs with AVX-512 bf16 or AMX run bf16 autocast several times faster than float32; CPUs with
    only AVX2 emulate it. On the AVX2-only dev box a (2048, 256) x (256, 1024) product took 26 ms
    in float32 and 1,077 ms under bf16 autocast, 40x slower, so bf16-mixed training there would
    take weeks instead of hours.
    """
    global _BF16_FAST
    if _BF16_FAST is None:
        a, b = torch.randn(512, 256), torch.randn(256, 512)
        pairs = {dtype: (a.to(dtype), b.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
        fastest = dict.fromkeys(pairs, math.inf)
        for x, y in pairs.values():
            x @ y  # warm-up
        # The fastest of 5 interleaved products per dtype: a process descheduled on a busy machine slows single
        # products, not the fastest. A sum of 3 was misled there: on the Ice Lake Xeon at load 10-15 it once
        # judged bf16 (9-19x slower) fast, and that DailyDialog training ran bf16 at 3-4x the CPU time per step.
        for _ in range(5):
            for dtype, (x, y) in pairs.items():
                start = time.perf_counter()
                x @ y
                fastest[dtype] = min(fastest[dtype], time.perf_counter() - start)
        _BF16_FAST = fastest[torch.bfloat16] < fastest[torch.float32]
    return _BF16_FAST
