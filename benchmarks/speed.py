"""Speed benchmark: training tokens/s in fp32 and bf16-mixed, the fraction of this machine's matmul peak
each family reaches, and decoding speed (greedy / beam, batch 1 / 64, Transformer cache on / off).

    python benchmarks/speed.py                                      # everything, untrained models for decoding
    python benchmarks/speed.py --checkpoint runs/transformer/best.ckpt   # decode a trained model (representative)
    python benchmarks/speed.py --families transformer --steps 20 --parts train
    python benchmarks/speed.py --parts profile                      # torch.profiler on Transformer bf16 steps
    python benchmarks/speed.py --parts engines --checkpoint transformer=T.ckpt --checkpoint lstm=L.ckpt
                                   # PyTorch fp32/bf16/int8 and CTranslate2 float32/int8 side by side, BLEU per row

Training runs the real training step: Seq2SeqSystem (its teacher-forced loss, and the AdamW
groups and schedule of its configure_optimizers) in a Lightning Trainer with the config's
gradient clipping and precision (fp32 = 32-true, bf16 = bf16-mixed), on real Multi30k batches from
the DataModule with each family's shipped data options ($TRANSLATOR_DATA_DIR or --data_dir).
Warm-up steps are not timed. Prints one table and writes JSON (--out). Run from the repository root.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from _common import (DATASET, FAMILIES, TEST_SPLIT_NAME, BenchmarkError, check_checkpoint, check_data, config_path,
                     fmt, hardware, hardware_line, load_config, parse_checkpoint_specs, positive, run_main, shell,
                     table)

PROG = "speed.py"
PARTS = ("peak", "train", "decode", "profile", "engines")
PRECISIONS = {"fp32": None, "bf16": "bfloat16"}
TRAINER_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}  # Lightning's names
FLOP_NOTE = (
    "FLOPs per training step = 6 x parameters touched per token (2 forward + 4 backward), over non-pad tokens: per "
    "source token the encoder's non-embedding parameters plus the memory-side projections (Transformer "
    "cross-attention keys/values, Bahdanau key projection), per target token the decoder's non-embedding "
    "parameters plus the output projection. Embedding lookups cost no matmul FLOPs; attention scores and "
    "weighted sums, the once-per-sentence bridge, padded positions, the loss and the optimizer are not counted. "
    "% of peak = achieved FLOP/s / the best square matmul FLOP/s of the same dtype measured in this run.")
UNTRAINED_NOTE = ("decoding used UNTRAINED models (no --checkpoint): they rarely emit eos, so every sentence runs "
                  "to the length limit (1.5 x source + 10); these decoding numbers are not representative")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                   help="families to train (and to decode when no --checkpoint is given); default all")
    p.add_argument("--src_lang", default=None, help="source language (default: the shipped configs', de)")
    p.add_argument("--tgt_lang", default=None, help="target language (default: the shipped configs', en)")
    p.add_argument("--data_dir", default=None,
                   help="folder holding multi30k/ (default $TRANSLATOR_DATA_DIR, then data/)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per family and precision (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps before them (default 2)")
    p.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS),
                   help="training precisions (default fp32 bf16; bf16 = bf16-mixed autocast)")
    p.add_argument("--peak_sizes", nargs="+", type=int, default=[2048, 4096],
                   help="square matmul sizes for the peak (default 2048 4096)")
    p.add_argument("--peak_repeats", type=int, default=3, help="timed matmuls per size; the best counts (default 3)")
    p.add_argument("--checkpoint", action="append", default=None, metavar="[FAMILY=]PATH",
                   help="trained checkpoint to decode with (repeatable); without one, untrained models decode")
    p.add_argument("--decode_sentences", type=int, default=None,
                   help="test sentences decoded at batch 64 (default: all of test_2016_flickr)")
    p.add_argument("--batch1_sentences", type=int, default=100,
                   help="test sentences decoded one at a time (default 100: batch 1 is slow)")
    p.add_argument("--decode_precisions", nargs="+", choices=["fp32", "bf16", "int8"], default=["fp32"],
                   help="decoding precisions (translate/evaluate --precision; default fp32)")
    p.add_argument("--beam_size", type=int, default=5, help="beam size of the beam rows (default 5)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=["peak", "train", "decode"],
                   help="what to measure (default: peak train decode; engines: see benchmarks/_engines.py)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="intra-op threads of PyTorch and CTranslate2 in the engines part (default: all cores)")
    p.add_argument("--export_dir", default="runs/exported",
                   help="where the engines part exports the Transformer to CTranslate2 (default %(default)s)")
    p.add_argument("--profile", action="store_true", help="also profile Transformer bf16 training steps")
    p.add_argument("--profile_steps", type=int, default=3, help="profiled steps (default 3)")
    p.add_argument("--profile_rows", type=int, default=20, help="ops shown in the profile table (default 20)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    p.add_argument("--out", default="benchmarks/results/speed.json", help="JSON output (default %(default)s)")
    return p.parse_args(argv)


def preflight(args: argparse.Namespace) -> tuple[set[str], list[tuple[str, Path, dict[str, Any]]]]:
    """Check options, data and checkpoints before any measurement; returns the parts and the checkpoints."""
    for name in ("steps", "peak_repeats", "beam_size", "profile_steps", "profile_rows", "batch1_sentences",
                 "decode_sentences", "threads"):
        positive(f"--{name}", getattr(args, name))
    positive("--warmup", args.warmup, allow_zero=True)
    for size in args.peak_sizes:
        positive("--peak_sizes", size)
    parts = set(args.parts) | ({"profile"} if args.profile else set())
    data = load_config("transformer")["data"]
    args.src_lang = args.src_lang or data.get("src_lang", "de")
    args.tgt_lang = args.tgt_lang or data.get("tgt_lang", "en")
    specs = parse_checkpoint_specs(args.checkpoint, bare_allowed=True)
    if "engines" in parts and not specs:
        raise BenchmarkError("--parts engines compares trained models: give --checkpoint FAMILY=PATH (one or more)")
    uses_datamodule = bool(parts & {"train", "profile"}) or ("decode" in parts and not specs)
    splits = (["train"] if uses_datamodule else []) + (["test"] if parts & {"decode", "engines"} else [])
    check_data(args.src_lang, args.tgt_lang, args.data_dir, splits or ["test"])
    checkpoints = []
    for family, path in specs:
        facts = check_checkpoint(path, args.src_lang, args.tgt_lang, family)
        checkpoints.append((facts["family"], path, facts))
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise BenchmarkError(f"unknown --device {args.device!r}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(f"--device {args.device} asked for, but no CUDA device is visible; use --device cpu")
    return parts, checkpoints


# ---- building what is measured -------------------------------------------------------------------
class Family:
    """One family's shipped config, DataModule (shared when the data options agree) and training system."""

    _datamodules: dict[str, Any] = {}

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args
        self.config = load_config(name)  # its trainer block includes translator.cli.TRAINER_DEFAULTS

    @property
    def datamodule(self) -> Any:
        from translator.training.datamodule import Seq2SeqDataModule

        data = {**self.config["data"], "src_lang": self.args.src_lang, "tgt_lang": self.args.tgt_lang,
                "data_dir": self.args.data_dir}
        key = json.dumps(data, sort_keys=True)
        if key not in self._datamodules:
            dm = Seq2SeqDataModule(**data)
            dm.setup("fit")
            self._datamodules[key] = dm
        return self._datamodules[key]

    def model(self, seed: int = 0) -> Any:
        """A freshly initialised model of the shipped config, vocabulary sizes from the data."""
        import torch

        from translator.artifacts.checkpoint import build_model

        dm = self.datamodule
        spec = self.config["model"]["model"]
        init = {**(spec.get("init_args") or {}), "src_vocab_size": dm.src_vocab_size,
                "tgt_vocab_size": dm.tgt_vocab_size, "pad_id": dm.pad_id}
        torch.manual_seed(seed)
        return build_model({"class_path": spec["class_path"], "init_args": init}, source=str(config_path(self.name)))

    def system(self, seed: int = 0) -> Any:
        """Seq2SeqSystem around a fresh model, with the config's hyper-parameters and the data's tokenizer."""
        from translator.training.system import Seq2SeqSystem

        system = Seq2SeqSystem(self.model(seed), **{k: v for k, v in self.config["model"].items() if k != "model"})
        system.tokenizer = self.datamodule.tokenizer
        return system

    def batches(self, n: int) -> list[dict[str, Any]]:
        """The first n train batches in the DataModule's (seeded) order, cycling when the split is small."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            for batch in self.datamodule.train_dataloader():
                out.append({k: batch[k] for k in ("src", "src_mask", "tgt_in", "tgt_out")})
                if len(out) == n:
                    break
        return out


def flop_parameters(model: Any) -> dict[str, int]:
    """Parameters touched per source token, per target token, embeddings, and once-per-sentence ones (see FLOP_NOTE)."""
    counts = {"per_source_token": 0, "per_target_token": 0, "embedding": 0, "per_sentence": 0}
    for name, param in model.named_parameters(remove_duplicate=False):  # a tied weight counts in every role
        top = name.split(".")[0]
        if top == "out":
            role = "per_target_token"  # the output projection, tied to the embedding or not
        elif "emb" in top:
            role = "embedding"
        elif top.startswith("encoder") or "cross_attn.kv" in name or "key_proj" in name:
            role = "per_source_token"
        elif top == "bridge":
            role = "per_sentence"
        else:
            role = "per_target_token"
        counts[role] += param.numel()
    return counts


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit_steps(family: Family, batches: list[dict[str, Any]], precision: str, device: Any, untimed: int,
              profiler: Any = None) -> tuple[Any, float, float]:
    """Train on `batches`, one optimizer step each, as `translator fit` does: Seq2SeqSystem's
    training_step, backward, the config's gradient clipping, its optimizer and schedule, in a Lightning
    Trainer. Returns (system, seconds of the steps after the first `untimed`, the last step's loss).
    `profiler` (a torch.profiler.profile) records the timed steps."""
    import lightning as L
    import torch

    class Window(L.Callback):
        """Wall time from the start of step `untimed` to the end of the last step."""

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == untimed:
                synchronize(device)
                if profiler is not None:
                    profiler.start()
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == len(batches) - 1:
                synchronize(device)
                self.seconds = time.perf_counter() - self.start
                if profiler is not None:
                    profiler.stop()
                self.loss = float(outputs["loss"])

    warnings.filterwarnings("ignore", "You defined a `validation_step` but have no `val_dataloader`")
    system, window = family.system(), Window()
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=[device.index or 0] if device.type == "cuda" else 1,
        precision=TRAINER_PRECISION[precision], gradient_clip_val=family.config["trainer"].get("gradient_clip_val"),
        max_epochs=1, max_steps=len(batches), limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[window])
    # batch_size=None: the DataModule's batches as they are (a plain list would be read as several loaders)
    trainer.fit(system, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return system, window.seconds, window.loss


# ---- measurements ------------------------------------------------------------------------------
def measure_peak(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Best square-matmul GFLOP/s per dtype (2 n^3 FLOPs each)."""
    import torch

    peak = {}
    for precision in args.precisions:
        dtype = getattr(torch, PRECISIONS[precision] or "float32")
        by_size = {}
        for n in args.peak_sizes:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            c = torch.empty(n, n, device=device, dtype=dtype)
            torch.matmul(a, b, out=c)  # warm-up: thread pool, kernel choice
            best = float("inf")
            for _ in range(args.peak_repeats):
                synchronize(device)
                start = time.perf_counter()
                torch.matmul(a, b, out=c)
                synchronize(device)
                best = min(best, time.perf_counter() - start)
            by_size[n] = round(2 * n**3 / best / 1e9, 3)
            del a, b, c
        peak[precision] = {"gflops": max(by_size.values()), "by_size": by_size}
        print(f"matmul peak {precision}: {peak[precision]['gflops']:,.1f} GFLOP/s {by_size}", file=sys.stderr)
    return peak


def measure_train(family: Family, precision: str, args: argparse.Namespace, device: Any,
                  peak: dict[str, Any]) -> dict[str, Any]:
    """Training tokens/s (source + target non-pad tokens) over args.steps timed steps."""
    batches = family.batches(args.warmup + args.steps)
    system, seconds, loss = fit_steps(family, batches, precision, device, untimed=args.warmup)
    model, timed = system.model, batches[args.warmup:]
    src_tokens = sum(int(b["src_mask"].sum()) for b in timed)
    tgt_tokens = sum(int((b["tgt_out"] != model.pad_id).sum()) for b in timed)
    params = flop_parameters(model)
    flops = 6 * (params["per_source_token"] * src_tokens + params["per_target_token"] * tgt_tokens)
    gflops = flops / seconds / 1e9
    peak_gflops = peak.get(precision, {}).get("gflops")
    row = {
        "family": family.name, "precision": "bf16-mixed" if precision == "bf16" else precision,
        "parameters": sum(p.numel() for p in model.parameters()), "flop_parameters": params,
        "steps": len(timed), "warmup_steps": args.warmup, "sentences_per_batch": statistics.mean(
            b["src"].size(0) for b in timed), "src_tokens": src_tokens, "tgt_tokens": tgt_tokens,
        "seconds": round(seconds, 3), "ms_per_step": round(1000 * seconds / len(timed), 1),
        "tokens_per_s": round((src_tokens + tgt_tokens) / seconds, 1), "gflops": round(gflops, 2),
        "peak_fraction": None if not peak_gflops else round(gflops / peak_gflops, 4),
        "final_loss": round(float(loss), 4), "max_tokens": family.config["data"].get("max_tokens"),
    }
    print(f"train {family.name} {row['precision']}: {row['tokens_per_s']:,.0f} tokens/s, "
          f"{row['ms_per_step']:,.0f} ms/step", file=sys.stderr)
    return row


def decode_targets(args: argparse.Namespace, checkpoints: list[tuple[str, Path, dict[str, Any]]],
                   device: Any) -> list[tuple[str, Any]]:
    """(label, Translator) per checkpoint, or per family with an untrained model when none is given."""
    from translator.artifacts.checkpoint import Bundle, CheckpointMeta
    from translator.inference.translator import Translator

    if checkpoints:
        labels = [f"{family} ({path.name})" for family, path, _ in checkpoints]
        if len(set(labels)) < len(labels):
            labels = [f"{family} ({path})" for family, path, _ in checkpoints]
        return [(label, Translator.from_checkpoint(path, device=device))
                for label, (_, path, _) in zip(labels, checkpoints)]
    out = []
    for name in args.families:
        family = Family(name, args)
        model = family.model().eval()
        meta = CheckpointMeta.from_options(f"untrained-{name}", model.config(),
                                           {"dataset": DATASET, "src_lang": args.src_lang, "tgt_lang": args.tgt_lang})
        bundle = Bundle(model=model, tokenizer=family.datamodule.tokenizer, meta=meta)
        out.append((f"{name} (untrained)", Translator(bundle, device=device)))
    return out


def measure_decode(label: str, translator: Any, sources: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Sentences/s and generated tokens/s for greedy and beam, batch 64 and 1, cache on/off (Transformer)."""
    rows = []
    model = translator.model
    caches = (True, False) if hasattr(model, "decode_cache") else (None,)
    decoders = (("greedy", {"decoder": "greedy"}),
                (f"beam{args.beam_size}", {"decoder": "beam", "beam_size": args.beam_size}))
    for decoder, options in decoders:
        for batch_size, limit in ((64, args.decode_sentences), (1, args.batch1_sentences)):
            texts = sources[:limit] if limit else sources
            for cache in caches:
                if cache is not None:
                    model.decode_cache = cache
                translator.translate(texts[:1], batch_size=1, **options)  # warm-up, not timed
                start = time.perf_counter()
                results = translator.translate(texts, batch_size=batch_size, **options)
                seconds = time.perf_counter() - start
                tokens = sum(len(r.tokens) for r in results)
                rows.append({"model": label, "precision": translator.precision, "decoder": decoder,
                             "batch_size": batch_size, "cache": cache,
                             "sentences": len(texts), "generated_tokens": tokens, "seconds": round(seconds, 3),
                             "sentences_per_s": round(len(texts) / seconds, 2),
                             "tokens_per_s": round(tokens / seconds, 1)})
                print(f"decode {label} {translator.precision} {decoder} batch {batch_size}"
                      f"{'' if cache is None else ' cache ' + ('on' if cache else 'off')}: "
                      f"{rows[-1]['sentences_per_s']:,.1f} sent/s", file=sys.stderr)
    if caches[0] is not None:
        model.decode_cache = True
    return rows


def measure_profile(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """torch.profiler over a few Transformer bf16-mixed training steps; the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    family = Family("transformer", args)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prof = profile(activities=activities)
    # one warm-up step outside the profile
    fit_steps(family, family.batches(1 + args.profile_steps), "bf16", device, untimed=1, profiler=prof)
    averages = prof.key_averages()
    text = averages.table(sort_by="self_cpu_time_total", row_limit=args.profile_rows)
    total = sum(e.self_cpu_time_total for e in averages) or 1
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.profile_rows]
    return {"steps": args.profile_steps, "precision": "bf16-mixed", "table": text,
            "top_ops": [{"name": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
                         "self_cpu_fraction": round(e.self_cpu_time_total / total, 4),
                         "cpu_total_ms": round(e.cpu_time_total / 1000, 2)} for e in top]}


# ---- report ------------------------------------------------------------------------------------
def summary_table(result: dict[str, Any]) -> str:
    header = ["part", "model", "setting", "batch", "sentences", "tokens/s", "sent/s", "GFLOP/s", "% of peak"]
    rows = []
    for precision, p in result.get("peak", {}).items():
        sizes = "/".join(str(n) for n in p["by_size"])
        rows.append(["matmul peak", "-", f"{precision} n={sizes}", None, None, None, None, fmt(p["gflops"]), "100"])
    for r in result.get("train", []):
        batch = f"~{r['sentences_per_batch']:.0f} sent (<={r['max_tokens']} tok)"
        pct = None if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}"
        rows.append([f"train x{r['steps']}", r["family"], r["precision"], batch, None, fmt(r["tokens_per_s"], 0),
                     None, fmt(r["gflops"]), pct])
    for r in result.get("decode", {}).get("rows", []):
        cache = "" if r["cache"] is None else (" cache" if r["cache"] else " no cache")
        rows.append(["decode", r["model"], f"{r.get('precision', 'fp32')} {r['decoder']}{cache}", r["batch_size"], r["sentences"],
                     fmt(r["tokens_per_s"], 0), fmt(r["sentences_per_s"], 2), None, None])
    return table(header, rows)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    parts, checkpoints = preflight(args)
    import torch

    from translator.runtime import tune_malloc

    tune_malloc()  # as the `translator` CLI does: reuse freed heap instead of fresh mmap pages
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" lines per measurement
    device = torch.device(args.device)
    result: dict[str, Any] = {
        "benchmark": "speed", "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": shell([sys.executable, "benchmarks/speed.py", *argv]), "device": str(device),
        "hardware": hardware(), "dataset": DATASET, "src_lang": args.src_lang, "tgt_lang": args.tgt_lang,
        "flop_note": FLOP_NOTE, "notes": [],
    }
    if "peak" in parts:
        result["peak"] = measure_peak(args, device)
    if "train" in parts:
        result["train"] = [measure_train(Family(name, args), precision, args, device, result.get("peak", {}))
                           for name in args.families for precision in args.precisions]
    if "decode" in parts:
        from translator.data import load_pairs

        sources = [s for s, _ in load_pairs(DATASET, "test", args.src_lang, args.tgt_lang, args.data_dir)]
        rows = []
        for label, translator in decode_targets(args, checkpoints, device):
            for precision in args.decode_precisions:
                rows += measure_decode(label, type(translator)(translator.bundle, translator.device, precision),
                                       sources, args)
        result["decode"] = {"split": TEST_SPLIT_NAME, "trained": bool(checkpoints), "precisions": args.decode_precisions,
                            "checkpoints": [str(p) for _, p, _ in checkpoints], "rows": rows}
        if not checkpoints:
            result["notes"].append(UNTRAINED_NOTE)
    if "engines" in parts:
        from _engines import measure_engines

        from translator.data import load_pairs

        pairs = load_pairs(DATASET, "test", args.src_lang, args.tgt_lang, args.data_dir)
        result["engines"] = measure_engines(args, checkpoints, [s for s, _ in pairs], [t for _, t in pairs])
    if "profile" in parts:
        result["profile"] = measure_profile(args, device)
        print(f"\ntorch.profiler: Transformer, {args.profile_steps} bf16-mixed training steps, "
              f"top {args.profile_rows} ops by self CPU time\n{result['profile']['table']}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if parts - {"profile"}:
        print(f"\nSpeed on {hardware_line(result['hardware'])}; device {device}\n")
        if parts - {"profile", "engines"}:
            print(summary_table(result))
        if "engines" in result:
            from _engines import engines_table

            print(f"\nEngines, {TEST_SPLIT_NAME} {args.src_lang}->{args.tgt_lang}, {args.threads} thread(s):\n")
            print(engines_table(result["engines"]))
        notes = ([FLOP_NOTE] if "train" in parts else []) + result["notes"]
        print("\n" + "\n".join(f"Note: {n}" for n in notes) if notes else "")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
