"""Data-pipeline scale benchmark: building the DataModule on synthetic corpora of 0.1M to 5M pairs.

    python benchmarks/data_scale.py                                   # 0.1M, 1M, 5M pairs, this tree only
    python benchmarks/data_scale.py --before /tmp/before --before_sizes 100000 1000000
    python benchmarks/data_scale.py --sizes 100000 --work /tmp/scale  # a quick look
    python benchmarks/data_scale.py --parts translate --checkpoint CKPT    # translate: 1,000 vs 1M lines

The corpora are Multi30k-shaped folders (`<work>/<N>/multi30k/train.en`, `train.fr`), each pair one
or two Tatoeba English-French pairs joined (seeded), so sentences are short like real web
pairs; val/test are the real Multi30k en/fr files. Every measurement is one fresh Python process
(`Seq2SeqDataModule("multi30k", "en", "fr", vocab_size=8000)`: prepare_data, setup("fit"),
train_dataloader), as a training process runs it:

    first      empty cache: train the tokenizer and encode every split
    encode     tokenizer cached, encoded splits not (the old code's second start)
    cached     everything cached: what a restart or another DDP rank does

Reported per run: wall seconds, CPU seconds (this process and its workers: robust to other jobs
sharing the cores), the peak RSS of the main process and of its largest encoding
worker (ru_maxrss), the RSS after setup over the RSS after the imports, per train+val token,
and the pairs/s of the run. `--before DIR` runs the same steps on another checkout (e.g.
`git worktree add /tmp/before <commit>`) through PYTHONPATH, for a before/after table in one run.
The work folder is outside the repository (never commit corpora); it is kept for reruns.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, BenchmarkError, hardware, hardware_line, run_main, shell, table

PROG = "data_scale.py"
SHARED = Path(os.environ.get("TRANSLATOR_DATA_DIR") or ROOT.parent / "shared" / "data")

CHILD = r"""
import json, resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
import numpy, torch, lightning, sentencepiece
try:
    from translator.training.datamodule import Seq2SeqDataModule
except ImportError:  # a checkout from before the layout of layers (--before)
    from translator.data import Seq2SeqDataModule
base = rss()
cpu_base = sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
args = json.loads(sys.argv[1])
start = time.perf_counter()
dm = Seq2SeqDataModule("multi30k", "en", "fr", **args)
dm.prepare_data()
dm.setup("fit")
batches = len(dm.train_dataloader())
wall = time.perf_counter() - start
train, val = dm.stats["train"], dm.stats["val"]
cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
          for f in ("ru_utime", "ru_stime"))
print(json.dumps({"wall_s": wall, "cpu_s": cpu - cpu_base, "rss_base": base, "rss_after_setup": rss(),
                  "self_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "worker_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
                  "train_pairs": train["pairs"], "batches": batches,
                  "tokens": train["src_tokens"] + train["tgt_tokens"] + val["src_tokens"] + val["tgt_tokens"],
                  "train_tokens": train["src_tokens"] + train["tgt_tokens"]}))
"""


LOADER_CHILD = r"""
import hashlib, json, sys, time
import torch
try:
    from translator.training.datamodule import Seq2SeqDataModule
except ImportError:  # a checkout from before the layout of layers (--before)
    from translator.data import Seq2SeqDataModule
args = json.loads(sys.argv[1])
dm = Seq2SeqDataModule(**args)  # the shipped Transformer config's data options
dm.setup("fit")
digest, seconds, batches, tokens = hashlib.sha256(), [], 0, 0
for epoch in range(3):
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    start = time.perf_counter()
    for batch in loader:
        if epoch == 0:
            for key in ("src", "src_mask", "tgt_in", "tgt_out", "index"):
                digest.update(batch[key].numpy().tobytes())
            batches += 1
            tokens += int(batch["src_mask"].sum()) + int((batch["tgt_out"] != dm.pad_id).sum())
    seconds.append(time.perf_counter() - start)
model = hashlib.sha256(b"".join(v or b"" for v in dm.tokenizer.to_dict().values())).hexdigest()
print(json.dumps({"batches": batches, "tokens": tokens, "epoch0_sha256": digest.hexdigest(), "tokenizer_sha256": model,
                  "loader_s_per_epoch": min(seconds)}))
"""


def loader_check(codes: list[tuple[str, str, Any]], work: Path) -> list[dict]:
    """Real Multi30k de->en with the shipped options: same batches from every code version, and the loader's cost."""
    import yaml

    data = yaml.safe_load((ROOT / "translator" / "configs" / "transformer.yaml").read_text())["data"]
    rows = []
    for code, root, _ in codes:
        options = {**data, "data_dir": str(SHARED), "cache_dir": str(work / f"cache-multi30k-{code}")}
        shutil.rmtree(options["cache_dir"], ignore_errors=True)
        env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        proc = subprocess.run([sys.executable, "-c", LOADER_CHILD, json.dumps(options)], capture_output=True,
                              text=True, env=env, cwd=root)
        if proc.returncode:
            raise BenchmarkError(f"loader check failed ({root}):\n{proc.stderr[-2000:]}")
        row = {"code": code, **json.loads(proc.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"multi30k de->en {code}: {row['batches']} batches, {row['tokens']:,} tokens, one epoch of batches in "
              f"{row['loader_s_per_epoch']:.2f}s, epoch 0 sha256 {row['epoch0_sha256'][:16]}, tokenizer "
              f"{row['tokenizer_sha256'][:16]}", flush=True)
    if len({r["epoch0_sha256"] for r in rows}) > 1:
        print("multi30k: the code versions give DIFFERENT batches", flush=True)
    return rows


def translate_check(args: argparse.Namespace, work: Path) -> list[dict]:
    """Peak RSS and wall of `translator translate` on files of different lengths (Multi30k test lines repeated)."""
    if not args.checkpoint:
        raise BenchmarkError("the translate part needs --checkpoint CKPT")
    lines = (Path(args.multi30k) / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    rows = []
    for n in args.translate_lines:
        src = work / f"translate-{n}.de"
        if not src.is_file():
            with src.open("w", encoding="utf-8") as f:
                for i in range(n):
                    f.write(lines[i % len(lines)] + "\n")
        out = work / f"translate-{n}.out"
        cmd = [sys.executable, "-m", "translator", "translate", "--checkpoint", args.checkpoint, "--input", str(src),
               "--output", str(out), *args.translate_options]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        log_path = work / f"translate-{n}.stderr"  # a file, not a pipe: the progress bar would fill a pipe
        start = time.perf_counter()
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(cmd, env=env, stderr=log_file, text=True)
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err = log_path.read_text()
        if status:
            raise BenchmarkError(f"translate failed:\n{err[-2000:]}")
        written = sum(1 for _ in out.open(encoding="utf-8"))
        rows.append({"lines": n, "wall_s": wall, "peak_rss": usage.ru_maxrss * 1024, "output_lines": written,
                     "command": shell(cmd)})
        print(f"translate {n:>9,d} lines: {wall:7.1f}s  peak RSS {usage.ru_maxrss / 2**20:5.2f} GB  "
              f"({written:,} lines written)", flush=True)
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000, 5_000_000],
                   help="train pairs of the synthetic corpora (default 0.1M 1M 5M)")
    p.add_argument("--work", default="/tmp/translator-data-scale", help="where corpora and caches go (not the repo)")
    p.add_argument("--before", default=None, help="another checkout to measure the same way (PYTHONPATH)")
    p.add_argument("--before_sizes", nargs="+", type=int, default=None,
                   help="sizes for --before (default --sizes; the old code holds ~107 bytes/token: mind the RAM)")
    p.add_argument("--parts", nargs="+", default=["scale", "loader"], choices=["scale", "loader", "translate"],
                   help="scale: the synthetic corpora; loader: real Multi30k batches compared across code versions; "
                        "translate: peak RSS of `translator translate` by input length (needs --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="checkpoint for the translate part")
    p.add_argument("--translate_lines", nargs="+", type=int, default=[1000, 1_000_000])
    p.add_argument("--translate_options", nargs="*", default=["--decode.method", "greedy", "--decode.max_len_a", "0",
                                                              "--decode.max_len_b", "3", "--batch_size", "256"],
                   help="options for translate (default: greedy, at most 3 output tokens: the memory, not the model)")
    p.add_argument("--runs", nargs="+", default=["first", "encode", "cached"], choices=["first", "encode", "cached"])
    p.add_argument("--tatoeba", default=str(SHARED / "tatoeba-eng-fra" / "fra.txt"))
    p.add_argument("--multi30k", default=str(SHARED / "multi30k"), help="folder with val/test en+fr files")
    p.add_argument("--out", default="benchmarks/results/data_scale.json")
    return p.parse_args(argv)


def build_corpora(args: argparse.Namespace) -> dict[int, Path]:
    """One Multi30k-shaped folder per size; a smaller corpus is a prefix of the larger ones."""
    if not Path(args.tatoeba).is_file():
        raise BenchmarkError(f"Tatoeba file not found: {args.tatoeba} (set TRANSLATOR_DATA_DIR or --tatoeba)")
    work = Path(args.work).resolve()
    if ROOT in work.parents or work == ROOT:
        raise BenchmarkError(f"--work {work} is inside the repository; put corpora elsewhere (e.g. /tmp)")
    sizes = sorted(set(args.sizes + (args.before_sizes or [])))
    folders = {n: work / f"{n}" / "multi30k" for n in sizes}
    todo = [n for n in sizes if not (folders[n] / "train.fr").is_file()]
    if todo:
        pairs = [line.split("\t")[:2] for line in Path(args.tatoeba).read_text(encoding="utf-8").splitlines()]
        rng = random.Random(0)
        outs = {}
        for n in todo:
            folders[n].mkdir(parents=True, exist_ok=True)
            outs[n] = [(folders[n] / "train.en.tmp").open("w"), (folders[n] / "train.fr.tmp").open("w")]
            for split in ("val", "test_2016_flickr"):
                for lang in ("en", "fr"):
                    shutil.copyfile(Path(args.multi30k) / f"{split}.{lang}", folders[n] / f"{split}.{lang}")
        for i in range(max(todo)):
            first = rng.choice(pairs)
            pair = first if rng.random() < 0.5 else [f"{a} {b}" for a, b in zip(first, rng.choice(pairs))]
            for n, (en, fr) in outs.items():
                if i < n:
                    en.write(pair[0] + "\n")
                    fr.write(pair[1] + "\n")
        for n, files in outs.items():
            for f, lang in zip(files, ("en", "fr")):
                f.close()
                os.replace(folders[n] / f"train.{lang}.tmp", folders[n] / f"train.{lang}")
    return {n: folders[n].parent for n in args.sizes}


def run_child(code_root: str, options: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": code_root, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(options)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=code_root)
    out, err = proc.communicate()
    if proc.returncode:
        raise BenchmarkError(f"child failed ({code_root}, {options}):\n{err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def measure(code: str, code_root: str, size: int, data_dir: Path, runs: list[str], work: Path) -> list[dict]:
    cache = work / f"cache-{code}-{size}"
    shutil.rmtree(cache, ignore_errors=True)
    options = {"data_dir": str(data_dir), "cache_dir": str(cache), "vocab_size": 8000, "max_tokens": 4096}
    rows = []
    for run in ("first", "encode", "cached"):
        if run != "first" and run not in runs:
            continue
        if run == "cached" and code == "before":
            continue  # the old code caches the tokenizer only: its "cached" start is the "encode" one
        if run == "encode":
            shutil.rmtree(cache / "tokens", ignore_errors=True)  # keep the tokenizer, drop the encoded splits
        result = run_child(code_root, options)
        grown = result["rss_after_setup"] - result["rss_base"]
        row = {"code": code, "pairs": size, "run": run, **result, "pairs_per_s": result["train_pairs"] / result["wall_s"],
               "bytes_per_token_after_setup": grown / result["tokens"]}
        rows.append(row)
        print(f"{code:6s} {size:>9,d} {run:6s} {result['wall_s']:7.1f}s  cpu {result['cpu_s']:6.1f}s  peak {result['self_peak'] / 2**30:5.2f} GB "
              f"(worker {result['worker_peak'] / 2**30:4.2f} GB)  after setup +{grown / 2**20:6.0f} MB "
              f"= {row['bytes_per_token_after_setup']:5.1f} B/token  {row['pairs_per_s']:9,.0f} pairs/s", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    return rows


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    print(hardware_line(hardware()), flush=True)
    work = Path(args.work).resolve()
    rows: list[dict] = []
    codes = [("after", str(ROOT), args.sizes)]
    if args.before:
        codes.append(("before", str(Path(args.before).resolve()), args.before_sizes or args.sizes))
    work.mkdir(parents=True, exist_ok=True)
    loader = loader_check(codes, work) if "loader" in args.parts else []
    translate = translate_check(args, work) if "translate" in args.parts else []
    folders = build_corpora(args) if "scale" in args.parts else {}
    for size in sorted(set(args.sizes + (args.before_sizes or []))) if "scale" in args.parts else []:
        for code, root, sizes in codes:
            if size in sizes:
                if size not in folders:
                    folders.update(build_corpora(argparse.Namespace(**{**vars(args), "sizes": [size]})))
                rows.extend(measure(code, root, size, folders[size], args.runs, work))
    if rows:
        print(table(["code", "pairs", "run", "tokens", "wall s", "CPU s", "peak GB", "worker GB", "B/token after setup",
                     "pairs/s"],
                    [[r["code"], f"{r['pairs']:,}", r["run"], f"{r['tokens'] / 1e6:.1f} M", f"{r['wall_s']:.1f}",
                      f"{r['cpu_s']:.1f}",
                      f"{r['self_peak'] / 2**30:.2f}", f"{r['worker_peak'] / 2**30:.2f}",
                      f"{r['bytes_per_token_after_setup']:.1f}", f"{r['pairs_per_s']:,.0f}"] for r in rows]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": shell([sys.executable, *sys.argv]), "machine": hardware_line(hardware()),
                                          "rows": rows, "multi30k_loader": loader,
                                          "translate": translate}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
