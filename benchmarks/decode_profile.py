"""Where decoding time goes: torch.profiler over `Translator.translate` calls, one sentence or one batch at a time.

    python benchmarks/decode_profile.py --checkpoint CKPT                  # 30 test sentences, greedy, 1 thread
    python benchmarks/decode_profile.py --checkpoint CKPT --decode.method beam --sentences 50 --threads 2
    python benchmarks/decode_profile.py --checkpoint CKPT --batch_size 64 --sentences 256 --decode.method beam

Translates the first `--sentences` of test_2016_flickr in batches of `--batch_size` (default 1) with the
checkpoint's PyTorch engine (after `--warmup` untimed batches, default 5), prints the CPU milliseconds per
sentence without and with the profiler, the operator calls per sentence and the operators by self CPU time,
and the weight bytes one decoder step reads (decoder and output layer; the source's keys and values are
cached): the memory-bandwidth floor of batch-1 decoding. It also counts the decoder rows the search ran (one
row = one hypothesis advanced one token) and the linear-layer FLOPs they cost (2 x the weights of one decoder
step per row), so the achieved GFLOP/s shows how close a larger batch or a beam comes to the arithmetic
limit: a beam of K advances about K times the rows of greedy search, so at a batch where greedy is already
bound by arithmetic rather than by per-step overhead, beam / greedy time cannot fall much below the ratio of
their rows. Run from the repository root.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import TEST_SPLIT_NAME, BenchmarkError, check_data, hardware, hardware_line, positive, run_main

PROG = "decode_profile.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a translation checkpoint (e.g. .../best.ckpt)")
    p.add_argument("--data_dir", default=None,
                   help="folder holding multi30k/ (default $TRANSLATOR_DATA_DIR, then data/)")
    p.add_argument("--sentences", type=int, default=30, help="test sentences profiled (default 30)")
    p.add_argument("--batch_size", type=int, default=1, help="sentences per translate call (default 1)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--decode.method", dest="method", choices=["greedy", "beam"], default="greedy")
    p.add_argument("--decode.beam_size", dest="beam_size", type=int, default=5)
    p.add_argument("--rows", type=int, default=15, help="operators shown (default 15)")
    args = p.parse_args(argv)
    for name in ("sentences", "batch_size", "threads", "beam_size", "rows"):
        positive(f"--{name}", getattr(args, name))
    positive("--warmup", args.warmup, allow_zero=True)
    return args


def decoder_step_bytes(model) -> int:
    """Bytes of the weights one decoder step reads: the decoder's parameters and the output layer, without the
    cross-attention key/value projections (applied once to the source and cached)."""
    seen, total = set(), 0
    for name, p in model.named_parameters(remove_duplicate=False):  # a tied output layer under its own name too
        step = name.startswith(("decoder", "out")) and not any(k in name for k in (".kv.", "k_proj", "v_proj"))
        if step and p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def count_decoder_rows(model) -> list[int]:
    """Make `model.decode_step` count the rows (hypotheses) it advances; returns the one-element counter."""
    counter, step = [0], model.decode_step

    def counted(tokens, state):
        counter[0] += int(tokens.size(0))
        return step(tokens, state)

    model.decode_step = counted  # an instance attribute: this process only
    return counter


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from translator.artifacts.checkpoint import load_bundle
    from translator.decoding import DecodeConfig
    from translator.inference.translator import Translator

    torch.set_num_threads(args.threads)
    path = Path(args.checkpoint)
    if not path.is_file():
        raise BenchmarkError(f"--checkpoint {path}: no such file")
    try:
        bundle = load_bundle(path)
    except ValueError as err:
        raise BenchmarkError(str(err)) from None
    src_lang, tgt_lang = bundle.data.get("src_lang", "de"), bundle.data.get("tgt_lang", "en")
    data_dir = check_data(src_lang, tgt_lang, args.data_dir, ["test"])
    source = data_dir / f"{TEST_SPLIT_NAME}.{src_lang}"
    lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    warmup = args.warmup * args.batch_size
    if len(lines) < warmup + args.sentences:
        raise BenchmarkError(f"{source}: {len(lines)} sentences, fewer than --warmup {args.warmup} batches of "
                             f"{args.batch_size} + --sentences {args.sentences}")
    translator = Translator(bundle, precision="fp32")
    config = DecodeConfig(method=args.method, beam_size=args.beam_size)
    rows = count_decoder_rows(bundle.model)
    batches = [lines[i:i + args.batch_size] for i in range(0, warmup, args.batch_size)]
    for batch in batches:  # untimed
        translator.translate(batch, config, batch_size=args.batch_size)
    timed = lines[warmup:warmup + args.sentences]
    batches = [timed[i:i + args.batch_size] for i in range(0, len(timed), args.batch_size)]
    rows[0] = 0
    start = time.process_time()
    for batch in batches:
        translator.translate(batch, config, batch_size=args.batch_size)
    plain_s = time.process_time() - start
    plain_ms, rows_per_sentence = plain_s / len(timed) * 1000, rows[0] / len(timed)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            translator.translate(batch, config, batch_size=args.batch_size)
    ops = prof.key_averages()
    calls = sum(e.count for e in ops) / len(timed)
    profiled_ms = sum(e.self_cpu_time_total for e in ops) / len(timed) / 1000
    step_bytes = decoder_step_bytes(bundle.model)
    step_mb = step_bytes / 1e6
    gflop = rows_per_sentence * 2 * step_bytes / 4 / 1e9  # float32 weights: 4 bytes each, 2 FLOPs per weight a row
    print(hardware_line(hardware()))
    print(f"{path}: {args.method} batch {args.batch_size}, {len(timed)} sentences, {args.threads} thread(s)")
    print(f"CPU per sentence: {plain_ms:.1f} ms ({profiled_ms:.1f} ms under the profiler); "
          f"{calls:,.0f} operator calls per sentence")
    print(f"decoder rows per sentence: {rows_per_sentence:.1f}; their linear layers: {gflop * 1000:.1f} MFLOP a "
          f"sentence, {gflop / (plain_ms / 1000):.1f} GFLOP/s of CPU time")
    print(f"weights read per decoder step: {step_mb:.1f} MB in float32 ({step_mb / 4:.1f} MB in int8)")
    print(ops.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
