"""What one training step of a Transformer holds in memory, without Lightning: saved tensors, heap extent.

    python benchmarks/step_memory.py saved                       # tensors autograd keeps for backward, by shape
    python benchmarks/step_memory.py heap --steps 40 --shapes shapes.json   # glibc heap per step
    python benchmarks/step_memory.py graphs                      # graphs torch.compile builds for the loss
    python benchmarks/step_memory.py faults --mmap_mib 64        # what fresh (mmap'd) logits blocks cost
    python benchmarks/step_memory.py dropout                     # float32 vs boolean dropout masks, CPU ms
    python benchmarks/step_memory.py loss --steps 20 --config transformer   # chunked vs whole logits: CPU s, memory

`saved` runs one forward + loss of the shipped Transformer's sizes (`--d_model` etc. as in
translator/configs/transformer.yaml) on a (B, S, T) = (128, 32, 32) batch (4,096 target tokens) and
sums the bytes of the tensors autograd saves for backward (saved_tensors_hooks), by dtype and shape.
`heap` trains that model with AdamW for `--steps` steps on random tokens of the batch shapes in
`--shapes` (a JSON list of [B, S, T], e.g. one epoch's batches; default: the fixed 128x32x32), under
glibc malloc thresholds `--mmap_mib` / never trim (the float32 default: 1024), and prints after each
step glibc's heap extent (mallinfo2 `arena`), the bytes in use, the mmap'd bytes and the largest
in-use total a thread sampling every 10 ms saw during the step. `graphs` calls the compiled loss
on 14 row counts from 1 to 4,096 and prints how many graphs torch.compile has built. `faults` times
two fresh (4096, V) float32 blocks per iteration under mmap threshold `--mmap_mib` (reused heap
memory at 1024, mmap'd and zero-filled pages below 125 MB). Linux (glibc) only.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import functools
import json
import random
import sys
import threading
import time

import torch

from _common import BenchmarkError, load_config, run_main

PROG = "step_memory.py"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def model(args: argparse.Namespace):
    from translator.models import Transformer

    return Transformer(src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, pad_id=0, d_model=args.d_model,
                       num_heads=4, num_encoder_layers=3, num_decoder_layers=3, ff_size=4 * args.d_model,
                       dropout=0.3, positions="sinusoidal", tie_embeddings="all").train()


def batch(B: int, S: int, T: int, vocab: int) -> dict[str, torch.Tensor]:
    """Random tokens, no padding: src (B, S), tgt_in / tgt_out (B, T)."""
    src, tgt = torch.randint(4, vocab, (B, S)), torch.randint(4, vocab, (B, T + 1))  # (B, S), (B, T + 1)
    return {"src": src, "src_mask": torch.ones(B, S, dtype=torch.bool), "tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:]}


@functools.lru_cache(maxsize=None)
def system(m, compile_loss: bool = True):
    """The trainer around `m` (one per model), without a Trainer: its `_shared_step` is the training step measured."""
    from translator.training.system import Seq2SeqSystem

    s = Seq2SeqSystem(m, label_smoothing=0.1, val_bleu=False, compile_loss=compile_loss)
    s.log = lambda *args, **kwargs: None
    return s.train()


def whole_logits_loss(m, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss as the trainer computed it before issue 37: the whole (B*T, V) logits, then the compiled loss."""
    from translator.training.loss import label_smoothed_loss

    logits = m(b["src"], b["src_mask"], b["tgt_in"])  # (B, T, V)
    return label_smoothed_loss(logits.flatten(0, 1), b["tgt_out"].flatten(), 0.1, 0)[0]


def step(m, B: int, S: int, T: int, vocab: int, whole_logits: bool = False):
    b = batch(B, S, T, vocab)
    return whole_logits_loss(m, b) if whole_logits else system(m)._shared_step(b, "train")


def saved(args: argparse.Namespace) -> None:
    m, bytes_of, count, seen = model(args), collections.Counter(), collections.Counter(), set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            bytes_of[(str(t.dtype), tuple(t.shape))] += t.untyped_storage().nbytes()
            count[(str(t.dtype), tuple(t.shape))] += 1
        return t

    step(m, 128, 32, 32, args.vocab, args.whole_logits).backward()  # compile the loss first
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step(m, 128, 32, 32, args.vocab, args.whole_logits)
    loss.backward()
    print(f"saved for backward: {sum(bytes_of.values()) / 2**20:.1f} MB")
    for key, size in bytes_of.most_common(args.top):
        print(f"{size / 2**20:8.1f} MB  x{count[key]:3d}  {key[0]} {key[1]}")


def heap(args: argparse.Namespace) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, args.mmap_mib << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never
    mallinfo2 = libc.mallinfo2
    mallinfo2.restype = _Mallinfo2
    peak = [0]

    def sample() -> None:
        while True:
            info = mallinfo2()
            peak[0] = max(peak[0], info.uordblks + info.hblkhd)
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    shapes = [tuple(s) for s in json.load(open(args.shapes))] if args.shapes else [(128, 32, 32)]
    random.Random(0).shuffle(shapes)
    torch.manual_seed(0)
    m = model(args)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    for i in range(args.steps):
        B, S, T = shapes[i % len(shapes)]
        peak[0] = 0
        step(m, B, S, T, args.vocab, args.whole_logits).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        info = mallinfo2()
        print(f"{i} (B, S, T) = {(B, S, T)}  heap {info.arena >> 20} MB, in use {info.uordblks >> 20} MB, "
              f"mmap'd {info.hblkhd >> 20} MB, in-use peak {peak[0] >> 20} MB", flush=True)


def graphs(args: argparse.Namespace) -> None:
    from torch._dynamo.utils import counters

    from translator.training.loss import fused_smoothed_cross_entropy

    for n in (3000, 3100, 2900, 4000, 1, 2, 17, 3333, 2048, 4096, 3999, 3998, 512, 1024):
        logits = torch.randn(n, args.vocab, requires_grad=True)  # (N, V)
        loss, _ = fused_smoothed_cross_entropy(logits, torch.randint(0, args.vocab, (n,)), 0.1, 0)
        loss.backward()
        print(f"N = {n}: compiled graphs so far {counters['stats']['unique_graphs']}", flush=True)


def faults(args: argparse.Namespace) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, args.mmap_mib << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never
    x, w = torch.randn(4096, args.d_model), torch.randn(args.vocab, args.d_model)
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(10):
            y = x @ w.t()  # (4096, V): a fresh logits-sized block
            z = y * 2  # and a second one
            del y, z
        print(f"mmap threshold {args.mmap_mib} MiB: {(time.perf_counter() - start) * 100:.0f} ms per "
              f"two fresh (4096, {args.vocab}) float32 blocks", flush=True)


def dropout_masks(args: argparse.Namespace) -> None:
    """The byte-mask dropout's forward + backward on a (128, 32, d_model) float32 tensor, CPU ms: a float32
    mask (4 bytes per element kept for backward; shipped until issue 37) vs the boolean one shipped now (1 byte)."""
    x, grad, threshold = torch.randn(128, 32, args.d_model), torch.randn(128, 32, args.d_model), 77  # p = 0.3
    scale = 256 / (256 - threshold)

    def float_mask() -> torch.Tensor:
        mask = (torch.empty(x.shape, dtype=torch.uint8).random_() >= threshold).to(x.dtype).mul_(scale)
        x * mask  # forward; backward:
        return grad * mask

    def bool_mask() -> torch.Tensor:
        keep = torch.empty(x.shape, dtype=torch.uint8).random_() >= threshold
        (x * keep).mul_(scale)  # forward; backward:
        return (grad * keep).mul_(scale)

    for name, fn in (("float32 mask", float_mask), ("bool mask", bool_mask)) * 3:
        start = time.process_time()
        for _ in range(50):
            fn()
        print(f"{name}: {(time.process_time() - start) / 50 * 1000:.2f} ms CPU per forward + backward", flush=True)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key + ":"))


def loss_paths(args: argparse.Namespace) -> None:
    """The trainer's step (chunked output layer + loss) against the whole-logits loss, interleaved in one
    process on the same real batches (`--config`'s first training batches): CPU seconds per forward +
    backward under the float32 malloc thresholds, then the memory a step touches over what is live between
    steps: before each step `malloc_trim(0)` gives every free heap page back and the RSS peak is reset
    (/proc/self/clear_refs), so the step's VmHWM - VmRSS counts the pages it allocates (its live peak, plus
    any holes it leaves within itself)."""
    import os

    from speed import Family
    from translator.runtime import FP32_MMAP_THRESHOLD, FP32_TRIM_THRESHOLD, tune_malloc

    tune_malloc(FP32_MMAP_THRESHOLD, FP32_TRIM_THRESHOLD)
    data = load_config(args.config)["data"]
    family = Family(args.config, argparse.Namespace(src_lang=data.get("src_lang"), tgt_lang=data.get("tgt_lang"),
                                                    data_dir=os.environ.get("TRANSLATOR_DATA_DIR")))
    trainer = family.system()
    trainer.log = lambda *a, **k: None  # no Trainer attached
    trainer.train()
    m, eps = trainer.model, trainer.hparams.label_smoothing

    def whole(b: dict[str, torch.Tensor]) -> torch.Tensor:
        from translator.training.loss import label_smoothed_loss

        logits = m(b["src"], b["src_mask"], b["tgt_in"])  # (B, T, V)
        return label_smoothed_loss(logits.flatten(0, 1), b["tgt_out"].flatten(), eps, m.pad_id)[0]

    paths = {"whole logits": whole, "chunked": lambda b: trainer._shared_step(b, "train")}
    batches = family.batches(args.steps + 2)
    cpu = collections.defaultdict(list)
    for i, b in enumerate(batches):  # the first two: compiling, first allocations
        for name, fn in (list(paths.items()) if i % 2 else list(paths.items())[::-1]):
            start = time.process_time()
            fn(b).backward()
            if i >= 2:
                cpu[name].append(time.process_time() - start)
            m.zero_grad(set_to_none=True)
    for name, seconds in cpu.items():
        print(f"{name}: {sum(seconds) / len(seconds) * 1000:.0f} ms CPU per forward + backward "
              f"(mean of {len(seconds)}, median {sorted(seconds)[len(seconds) // 2] * 1000:.0f})", flush=True)
    ratio = sorted(c / w for c, w in zip(cpu["chunked"], cpu["whole logits"]))
    print(f"chunked / whole logits, per batch: median {ratio[len(ratio) // 2]:.3f}, "
          f"mean of CPU times {sum(cpu['chunked']) / sum(cpu['whole logits']):.3f}", flush=True)
    libc = ctypes.CDLL("libc.so.6")
    for name, fn in paths.items():
        peaks = []
        for b in batches[:6]:
            libc.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
            base = _status_mb("VmRSS")
            fn(b).backward()
            peaks.append(_status_mb("VmHWM") - base)
            m.zero_grad(set_to_none=True)
        print(f"{name}: a step touches {max(peaks):.0f} MB over what is live between steps "
              f"({', '.join(f'{p:.0f}' for p in peaks)})", flush=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["saved", "heap", "graphs", "faults", "dropout", "loss"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--shapes", help="JSON list of [B, S, T] batch shapes (heap)")
    p.add_argument("--mmap_mib", type=int, default=1024,
                   help="glibc mmap threshold in MiB (heap, faults; default 1024)")
    p.add_argument("--config", default="transformer", help="loss: the shipped config whose data and model are "
                   "measured (transformer, chat_dailydialog...; data from $TRANSLATOR_DATA_DIR)")
    p.add_argument("--d_model", type=int, default=256)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--top", type=int, default=12, help="rows of the saved-tensor table")
    p.add_argument("--whole_logits", action="store_true",
                   help="saved, heap: the loss of the whole (B*T, V) logits (before issue 37's chunked loss) "
                   "instead of the trainer's")
    args = p.parse_args(argv)
    if not sys.platform.startswith("linux"):
        raise BenchmarkError("mallinfo2 is glibc's: this benchmark runs on Linux only")
    {"saved": saved, "heap": heap, "graphs": graphs, "faults": faults, "dropout": dropout_masks,
     "loss": loss_paths}[args.mode](args)
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
