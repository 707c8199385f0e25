"""`speed.py --parts engines`: decoding engines side by side on test_2016_flickr, BLEU on every row.

For each trained checkpoint: PyTorch fp32 / bf16 (autocast) / int8 (dynamic quantization), and for the
Transformer also CTranslate2 float32 / int8 (the checkpoint exported by `translator.artifacts.export` into
--export_dir) with `--threads` intra-op threads, PyTorch with the same number of threads. Each engine
decodes greedy and beam (--beam_size) at batch 64 (the whole test split, length-sorted batches as
`translate` does) and at batch 1 (the first --batch1_sentences, one call per sentence: p50 / p95
latency per sentence). Every row reports sentences/s, target tokens/s, BLEU of its own outputs and
the share of outputs identical to PyTorch fp32 with the same decoder. The PyTorch fp32 Transformer
also decodes greedy without its key/value cache (the cached / uncached ratio of the decode targets).
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PYTORCH_PRECISIONS = ("fp32", "bf16", "int8")
CT2_QUANTIZATIONS = ("float32", "int8")


def engines_for(family: str, path: Path, export_dir: Path, threads: int) -> list[tuple[str, str, Any]]:
    """(engine, precision, Translator) for one checkpoint: PyTorch precisions, then CTranslate2 for the Transformer."""
    from translator.artifacts.checkpoint import load_bundle
    from translator.inference.translator import Translator

    bundle = load_bundle(path)
    out = []
    for p in PYTORCH_PRECISIONS:
        translator = Translator(bundle, precision=p)
        if translator.precision == p:  # else it fell back (bf16 recurrent model, CPU without bf16): no row
            out.append(("pytorch", p, translator))
    if family == "transformer":
        from translator.artifacts.export import export_checkpoint
        from translator.engines.ct2 import load_exported

        for quantization in CT2_QUANTIZATIONS:
            folder = export_checkpoint(path, export_dir / f"{path.stem}-{quantization}", quantization, force=True)
            out.append(("ctranslate2", quantization, Translator(load_exported(folder, threads=threads))))
    return out


def _bleu(outputs: list[str], references: list[str]) -> float:
    from translator.evaluation.metrics import score

    return round(score(outputs, references, target_lang="en")["bleu"], 2)


def measure_engine(family: str, engine: str, precision: str, translator: Any, sources: list[str],
                   references: list[str], decoders: list[tuple[str, dict[str, Any]]], batch1: int,
                   reference_outputs: dict[tuple[str, int], list[str]]) -> list[dict[str, Any]]:
    """The rows of one engine: every decoder at batch 64 (all sentences) and batch 1 (the first `batch1`)."""
    rows = []
    for decoder, options in decoders:
        for batch_size, texts, refs in ((64, sources, references), (1, sources[:batch1], references[:batch1])):
            translator.translate(texts[:2], batch_size=batch_size, **options)  # warm-up, not timed
            latencies: list[float] = []
            cpu_latencies: list[float] = []
            cpu, start = time.process_time(), time.perf_counter()
            if batch_size == 1:
                results = []
                for text in texts:
                    t0, c0 = time.perf_counter(), time.process_time()
                    results += translator.translate([text], batch_size=1, **options)
                    latencies.append(time.perf_counter() - t0)
                    cpu_latencies.append(time.process_time() - c0)
            else:
                results = translator.translate(texts, batch_size=batch_size, **options)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            outputs = [r.text for r in results]
            key = (decoder, batch_size)
            if engine == "pytorch" and precision == "fp32":
                reference_outputs[key] = outputs
            same = reference_outputs.get(key)
            row = {"family": family, "engine": engine, "precision": precision, "decoder": decoder,
                   "batch_size": batch_size, "sentences": len(texts), "seconds": round(seconds, 3),
                   "cpu_seconds": round(cpu, 3), "sentences_per_s": round(len(texts) / seconds, 2),
                   "tokens_per_s": round(sum(len(r.tokens) for r in results) / seconds, 1),
                   "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
                   "p95_ms": round(1000 * statistics.quantiles(latencies, n=20)[-1], 2) if len(latencies) > 1 else None,
                   "p50_cpu_ms": round(1000 * statistics.median(cpu_latencies), 2) if cpu_latencies else None,
                   "bleu": _bleu(outputs, refs),
                   "same_as_fp32": None if same is None else round(sum(a == b for a, b in zip(outputs, same))
                                                                   / len(outputs), 4)}
            rows.append(row)
            print(f"engines {family} {engine} {precision} {decoder} batch {batch_size}: {row['sentences_per_s']:,.1f} "
                  f"sent/s, BLEU {row['bleu']}" + (f", p50 {row['p50_ms']} ms" if latencies else ""), file=sys.stderr)
    return rows


def measure_uncached(translator: Any, sources: list[str], references: list[str]) -> dict[str, Any]:
    """PyTorch fp32 Transformer greedy at batch 64 without the key/value cache (same outputs, for the ratio)."""
    translator.model.decode_cache = False
    try:
        translator.translate(sources[:2], method="greedy")
        cpu, start = time.process_time(), time.perf_counter()
        results = translator.translate(sources, batch_size=64, method="greedy")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        translator.model.decode_cache = True
    return {"family": "transformer", "engine": "pytorch", "precision": "fp32 no cache", "decoder": "greedy",
            "batch_size": 64, "sentences": len(sources), "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "sentences_per_s": round(len(sources) / seconds, 2),
            "tokens_per_s": round(sum(len(r.tokens) for r in results) / seconds, 1), "p50_ms": None, "p95_ms": None,
            "p50_cpu_ms": None,
            "bleu": _bleu([r.text for r in results], references), "same_as_fp32": None}


def _row(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def targets(rows: list[dict[str, Any]], beam: str) -> list[dict[str, Any]]:
    """The issue's targets, computed from the rows: (target, value, goal, met)."""
    out = []

    def add(name: str, value: float | None, goal: str, met: bool | None) -> None:
        out.append({"target": name, "value": None if value is None else round(value, 3), "goal": goal, "met": met})

    tf = dict(family="transformer")
    fp32_g = _row(rows, **tf, engine="pytorch", precision="fp32", decoder="greedy", batch_size=64)
    fp32_b = _row(rows, **tf, engine="pytorch", precision="fp32", decoder=beam, batch_size=64)
    ct32_g = _row(rows, **tf, engine="ctranslate2", precision="float32", decoder="greedy", batch_size=64)
    ct8_g = _row(rows, **tf, engine="ctranslate2", precision="int8", decoder="greedy", batch_size=64)
    ct8_b = _row(rows, **tf, engine="ctranslate2", precision="int8", decoder=beam, batch_size=64)
    uncached = _row(rows, **tf, precision="fp32 no cache")
    if fp32_g and ct32_g:
        add("CT2 float32 greedy = PyTorch fp32 greedy (share of sentences)", ct32_g["same_as_fp32"], ">= 0.99",
            ct32_g["same_as_fp32"] >= 0.99)
        add("CT2 float32 greedy BLEU - PyTorch fp32", ct32_g["bleu"] - fp32_g["bleu"], "|x| <= 0.2",
            abs(ct32_g["bleu"] - fp32_g["bleu"]) <= 0.2)
    for name, ct8, fp in (("greedy", ct8_g, fp32_g), (beam, ct8_b, fp32_b)):
        if ct8 and fp:
            add(f"CT2 int8 {name} BLEU - PyTorch fp32", ct8["bleu"] - fp["bleu"], "|x| <= 0.5",
                abs(ct8["bleu"] - fp["bleu"]) <= 0.5)
    if ct8_b and fp32_b:
        ratio = ct8_b["sentences_per_s"] / fp32_b["sentences_per_s"]
        add(f"CT2 int8 {beam} / PyTorch fp32 {beam} sentences/s, batch 64", ratio, ">= 3", ratio >= 3)
    for r in rows:
        if r["family"] == "transformer" and r["decoder"] == "greedy" and r["batch_size"] == 1:
            add(f"batch-1 greedy p50 ms/sentence, {r['engine']} {r['precision']} (CPU time p50 "
                f"{r['p50_cpu_ms']} ms)", r["p50_ms"], "<= 10", r["p50_ms"] <= 10)
    for clock, key in (("wall", "seconds"), ("CPU", "cpu_seconds")):  # CPU time: robust when other jobs share cores
        if fp32_g and fp32_b:
            ratio = fp32_b[key] / fp32_g[key]
            add(f"PyTorch fp32 {beam} / greedy {clock} time, batch 64", ratio, "<= 2", ratio <= 2)
        if fp32_g and uncached:
            ratio = uncached[key] / fp32_g[key]
            add(f"PyTorch fp32 greedy uncached / cached {clock} time, batch 64", ratio, ">= 3", ratio >= 3)
    for family in ("lstm", "attention"):
        for decoder in ("greedy", beam):
            fp = _row(rows, family=family, engine="pytorch", precision="fp32", decoder=decoder, batch_size=64)
            q = _row(rows, family=family, engine="pytorch", precision="int8", decoder=decoder, batch_size=64)
            if fp and q:
                ratio = q["sentences_per_s"] / fp["sentences_per_s"]
                add(f"{family} PyTorch int8 / fp32 {decoder} sentences/s, batch 64 (BLEU {q['bleu'] - fp['bleu']:+.2f})",
                    ratio, ">= 1.5 at BLEU +-0.5", ratio >= 1.5 and abs(q["bleu"] - fp["bleu"]) <= 0.5)
    return out


def measure_engines(args: Any, checkpoints: list[tuple[str, Path, dict[str, Any]]], sources: list[str],
                    references: list[str]) -> dict[str, Any]:
    """Every engine of every checkpoint, then the targets."""
    import torch

    torch.set_num_threads(args.threads)
    beam = f"beam{args.beam_size}"
    decoders = [("greedy", {"method": "greedy"}), (beam, {"method": "beam", "beam_size": args.beam_size})]
    texts = sources[:args.decode_sentences] if args.decode_sentences else sources
    refs = references[:len(texts)]
    rows: list[dict[str, Any]] = []
    for family, path, _ in checkpoints:
        reference_outputs: dict[tuple[str, int], list[str]] = {}
        for engine, precision, translator in engines_for(family, path, Path(args.export_dir), args.threads):
            rows += measure_engine(family, engine, precision, translator, texts, refs, decoders,
                                   args.batch1_sentences, reference_outputs)
            if family == "transformer" and engine == "pytorch" and precision == "fp32":
                rows.append(measure_uncached(translator, texts, refs))
            del translator
            partial = Path(f"{args.out}.partial")  # a long run leaves what it measured so far
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"rows": rows}, indent=1) + "\n", encoding="utf-8")
    Path(f"{args.out}.partial").unlink(missing_ok=True)
    return {"threads": args.threads, "checkpoints": [str(p) for _, p, _ in checkpoints], "rows": rows,
            "targets": targets(rows, beam)}


def engines_table(result: dict[str, Any], markdown: bool = False) -> str:
    from _common import fmt, table

    header = ["family", "engine", "precision", "decoder", "batch", "sentences", "wall s", "CPU s", "sent/s",
              "tokens/s", "p50 ms", "p95 ms", "p50 CPU ms", "BLEU", "= fp32"]
    rows = [[r["family"], r["engine"], r["precision"], r["decoder"], r["batch_size"], r["sentences"],
             fmt(r["seconds"], 1), fmt(r["cpu_seconds"], 1), fmt(r["sentences_per_s"], 1), fmt(r["tokens_per_s"], 0), fmt(r["p50_ms"], 1), fmt(r["p95_ms"], 1), fmt(r["p50_cpu_ms"], 1),
             fmt(r["bleu"], 2), None if r["same_as_fp32"] is None else f"{100 * r['same_as_fp32']:.1f}%"]
            for r in result["rows"]]
    goals = [[t["target"], fmt(t["value"], 3), t["goal"], "yes" if t["met"] else "NO"] for t in result["targets"]]
    return table(header, rows, markdown) + "\n\n" + table(["target", "value", "goal", "met"], goals, markdown)
