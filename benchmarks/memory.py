"""Resident memory of `translator fit` over its steps: the RSS curve, the malloc heap's split and tokens/s per run.

    python benchmarks/memory.py                                           # the shipped Transformer, 300 steps
    python benchmarks/memory.py --config translator/configs/chat_dailydialog.yaml --steps 200
    python benchmarks/memory.py --steps 200 --parallel \\
        --run 'before: --code /tmp/translator-main' --run 'after:' --run 'after-64MiB: --malloc 64MiB-never'

Each run trains `translator fit --config CONFIG --trainer.max_steps N` in a fresh process (glibc
reads its malloc thresholds once per process) with the run's extra `fit` arguments; `--malloc
POLICY` inside a run's spec sets `translator.cpu_fastpaths.tune_malloc`'s thresholds for that
process instead of the shipped ones (benchmarks/malloc.py's POLICIES; "glibc": not called), and
`--code DIR` runs another checkout's `translator` (e.g. the commit before a change), `--trim_slack X`
sets `translator.cpu_fastpaths.TRIM_SLACK` (inf: the training never trims its heap), and
`--emulated_bf16` trains in bf16 autocast even where the CPU only emulates it (its memory is bf16's;
its speed means nothing). After
every training step the child records VmRSS and VmHWM (/proc/self/status), the largest VmRSS a
thread sampling every 50 ms saw during the step, glibc's heap split (`mallinfo2`: bytes in use,
free but kept in the heap, mmap'd blocks) and the step's tokens, seconds and CPU seconds
(`time.process_time`, the fair speed figure on a shared machine) and the heap trims so far; rows also mark each
end of validation. `--parallel` starts all runs at once, so their tokens/s are measured in the
same conditions (give each OMP_NUM_THREADS=1 on a shared machine); otherwise they run one after
another. Validation runs as the config says (the whole run's peak includes it) unless
`--no_val`; `--max_minutes` ends each training after that long as well. Writes OUT/LABEL.jsonl
(every row, as it is recorded), OUT/memory.json (per run: peak RSS, RSS at each epoch end, tokens/s
of the steps after the first 10), OUT/memory.csv and OUT/memory.png (RSS over steps);
`--rows_only` rebuilds the last three from the .jsonl files of runs stopped midway. Run from the
repository root; no checkpoints are written.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, BenchmarkError, hardware, hardware_line, positive, run_main, shell, table
from malloc import POLICIES

PROG = "memory.py"
WARMUP_STEPS = 10  # steps left out of tokens/s (compilation, first allocations)

#: the child: optionally replace the malloc policy, record memory after every training step, run the CLI
CHILD = r"""
import ctypes, json, os, sys, threading, time
policy, out, code, trim_slack = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path.insert(0, code)  # this checkout's translator (the working directory, first on sys.path, may be another)
import translator.runtime as runtime
from translator import cpu_fastpaths
if os.environ.get("MEMORY_BENCHMARK_BF16") == "1":  # bf16 autocast even where the CPU emulates it (memory only)
    runtime.cpu_bf16_is_fast = lambda: True
if policy != "shipped":  # every call (the entry point's, and a float32 training's) sets this policy instead
    runtime.tune_malloc = (lambda *_: False) if policy is None else (lambda *_: cpu_fastpaths.tune_malloc(*policy))
if trim_slack is not None:
    cpu_fastpaths.TRIM_SLACK = trim_slack
trims = [0, 0.0]  # malloc_trim calls by the training's HeapTrim, their CPU seconds
if hasattr(cpu_fastpaths, "malloc_trim"):
    shipped_trim = cpu_fastpaths.malloc_trim
    def counted_trim():
        start = time.process_time()
        done = shipped_trim()
        trims[0] += 1
        trims[1] += time.process_time() - start
        return done
    cpu_fastpaths.malloc_trim = counted_trim

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]
try:
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = Mallinfo2
except (OSError, AttributeError):
    mallinfo2 = None

def status_mb(*keys):
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in keys:
                values[key] = int(line.split()[1]) / 1024
    return [values[k] for k in keys]

window = [0.0, 0.0]
def in_use_mb():
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20
def sample():  # the largest RSS and malloc'd bytes within each step, between the rows
    while True:
        window[0] = max(window[0], status_mb("VmRSS")[0])
        if mallinfo2 is not None:
            window[1] = max(window[1], in_use_mb())
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()

rows, start, log = [], time.perf_counter(), open(out, "w")
def record(system, phase, tokens=0, seconds=0.0, cpu=0.0):
    rss, hwm = status_mb("VmRSS", "VmHWM")
    row = {"phase": phase, "step": system.global_step, "epoch": system.current_epoch,
           "time_s": round(time.perf_counter() - start, 2), "rss_mb": round(rss, 1), "hwm_mb": round(hwm, 1),
           "window_peak_mb": round(max(window[0], rss), 1), "tokens": tokens, "step_s": round(seconds, 4),
           "cpu_s": round(cpu, 4), "trims": trims[0], "trim_cpu_s": round(trims[1], 3)}
    if mallinfo2 is not None:
        info = mallinfo2()
        row.update(heap_used_mb=round(info.uordblks / 2**20, 1), heap_free_mb=round(info.fordblks / 2**20, 1),
                   mmapped_mb=round(info.hblkhd / 2**20, 1), window_in_use_peak_mb=round(window[1], 1))
    window[0] = window[1] = 0.0
    rows.append(row)
    log.write(json.dumps(row) + "\n")  # one line per row, flushed: a run killed midway keeps what it recorded
    log.flush()

try:
    from translator.training.system import Seq2SeqSystem
except ImportError:  # a checkout from before the layout of layers (--code)
    from translator.system import Seq2SeqSystem
train_start, train_end = Seq2SeqSystem.on_train_batch_start, Seq2SeqSystem.on_train_batch_end
val_end = Seq2SeqSystem.on_validation_epoch_end
cpu_start = [0.0]
def on_train_batch_start(self, batch, batch_idx):
    train_start(self, batch, batch_idx)
    cpu_start[0] = time.process_time()
def on_train_batch_end(self, outputs, batch, batch_idx):
    train_end(self, outputs, batch, batch_idx)
    seconds, cpu = time.perf_counter() - self._step_start, time.process_time() - cpu_start[0]
    tokens = int(batch["src_mask"].sum()) + int((batch["tgt_out"] != self.model.pad_id).sum())
    record(self, "train", tokens, seconds, cpu)
def on_validation_epoch_end(self):
    val_end(self)
    if not self.trainer.sanity_checking:
        record(self, "val")
Seq2SeqSystem.on_train_batch_start, Seq2SeqSystem.on_train_batch_end = on_train_batch_start, on_train_batch_end
Seq2SeqSystem.on_validation_epoch_end = on_validation_epoch_end

from translator.cli import main
main(sys.argv[5:])
"""


def parse_run(spec: str) -> tuple[str, object, Path, float | None, bool, list[str]]:
    """'LABEL: [--malloc POLICY] [--code DIR] [--trim_slack X] [--emulated_bf16] [fit args]' -> (label, policy or
    "shipped", code root, HeapTrim's slack or None for the shipped one, bf16 on any CPU, fit args)."""
    label, sep, rest = spec.partition(":")
    label = label.strip()
    if not sep or not label:
        raise BenchmarkError(f"--run {spec!r}: write 'LABEL: [--malloc POLICY] [--code DIR] [fit arguments]', "
                             f"e.g. 'after:'")
    words, policy, code = shlex.split(rest), "shipped", ROOT
    bf16 = "--emulated_bf16" in words
    if bf16:
        words.remove("--emulated_bf16")
    if "--malloc" in words:
        k = words.index("--malloc")
        if k + 1 >= len(words) or words[k + 1] not in POLICIES:
            raise BenchmarkError(f"--run {spec!r}: --malloc takes one of {', '.join(POLICIES)}")
        policy = POLICIES[words[k + 1]]
        del words[k:k + 2]
    if "--code" in words:
        k = words.index("--code")
        if k + 1 >= len(words) or not (Path(words[k + 1]) / "translator" / "cli.py").is_file():
            raise BenchmarkError(f"--run {spec!r}: --code takes a checkout of translator (a folder holding translator/)")
        code = Path(words[k + 1]).resolve()
        del words[k:k + 2]
    trim_slack = None
    if "--trim_slack" in words:
        k = words.index("--trim_slack")
        try:
            trim_slack = float(words[k + 1])
        except (IndexError, ValueError):
            raise BenchmarkError(f"--run {spec!r}: --trim_slack takes a number (inf: never trim)") from None
        del words[k:k + 2]
    return label, policy, code, trim_slack, bf16, words


def max_time(minutes: float) -> str:
    """Minutes as Lightning's DD:HH:MM:SS."""
    seconds = max(1, round(minutes * 60))
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def start_run(label: str, policy: object, code: Path, trim_slack: float | None, bf16: bool, fit_args: list[str],
              args: argparse.Namespace, work: Path):
    rows_path = Path(args.out) / f"{label}.jsonl"  # kept: a run stopped midway can still be summarized
    cmd = [sys.executable, "-c", CHILD, json.dumps(policy), str(rows_path), str(code), json.dumps(trim_slack),
           "fit", "--config", args.config,
           "--trainer.max_steps", str(args.steps), "--trainer.enable_checkpointing", "false",
           "--trainer.logger.init_args.save_dir", str(work / label), *(
               ["--trainer.limit_val_batches", "0"] if args.no_val else []), *(
               ["--trainer.max_time", max_time(args.max_minutes)] if args.max_minutes else []), *fit_args]
    print(f"$ {shell(cmd[:2])} '<child>' {shell(cmd[3:4])} ROWS.json {shell(cmd[5:])}", flush=True)
    log = open(work / f"{label}.log", "w", encoding="utf-8")
    return {"label": label, "policy": policy, "code": str(code), "trim_slack": trim_slack, "fit_args": fit_args,
            "rows_path": rows_path, "log": log, "command": shell(cmd[7:]), "start": time.perf_counter(),
            "proc": subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "MEMORY_BENCHMARK_BF16": "1" if bf16 else "0"})}


def finish_run(run: dict) -> dict:
    code = run["proc"].wait()
    wall = time.perf_counter() - run["start"]
    run["log"].close()
    rows = read_rows(run["rows_path"])
    if code != 0 or not rows:
        tail = "\n".join(Path(run["log"].name).read_text(errors="replace").strip().splitlines()[-6:])
        raise BenchmarkError(f"run {run['label']}: `translator fit` failed with exit code {code}:\n{tail}")
    return summarize(run["label"], run["policy"], run["code"], run["fit_args"], rows, wall)


def read_rows(path: Path) -> list[dict]:
    """The rows a child wrote, one JSON object per line."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(label: str, policy: object, code: str, fit_args: list[str], rows: list[dict], wall: float) -> dict:
    """One run's figures from its rows: peak RSS, RSS at each epoch end, tokens/s after the warm-up steps."""
    train = [r for r in rows if r["phase"] == "train"]
    timed = train[WARMUP_STEPS:] or train
    epoch_end = {}
    for r in train:
        epoch_end[r["epoch"]] = r["rss_mb"]  # the last training step of each epoch
    peak = max(r["hwm_mb"] for r in rows)
    return {"run": label, "malloc": policy, "code": code, "fit_args": fit_args, "steps": len(train),
            "epochs_started": len(epoch_end), "peak_rss_gb": round(peak / 1024, 3),
            "rss_at_epoch_end_gb": {str(k): round(v / 1024, 3) for k, v in epoch_end.items()},
            "last_rss_gb": round(rows[-1]["rss_mb"] / 1024, 3),
            "tokens_per_s": round(sum(r["tokens"] for r in timed) / sum(r["step_s"] for r in timed), 1),
            "tokens_per_cpu_s": round(sum(r["tokens"] for r in timed) / max(sum(r.get("cpu_s", 0.0) for r in timed), 1e-9), 1),
            "trims": rows[-1].get("trims", 0), "trim_cpu_s": rows[-1].get("trim_cpu_s", 0.0),
            "wall_seconds": round(wall, 1), "rows": rows}


def plot(results: list[dict], title: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for res in results:
        train = [r for r in res["rows"] if r["phase"] == "train"]
        line, = ax.plot([r["step"] for r in train], [r["rss_mb"] / 1024 for r in train],
                        label=f"{res['run']} (peak {res['peak_rss_gb']:.2f} GB, {res['tokens_per_s']:.0f} tok/s)")
        ax.plot([r["step"] for r in train], [r["window_peak_mb"] / 1024 for r in train], color=line.get_color(),
                alpha=0.3, linewidth=0.8)
        for r in res["rows"]:
            if r["phase"] == "val":
                ax.axvline(r["step"], color=line.get_color(), linestyle=":", linewidth=0.8)
    ax.axhline(1.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("training step (dotted: end of a validation)")
    ax.set_ylabel("resident memory, GB (faint: peak within the step)")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", default="translator/configs/transformer.yaml", help="training config (default %(default)s)")
    p.add_argument("--steps", type=int, default=300, help="training steps per run (default %(default)s)")
    p.add_argument("--run", action="append", dest="runs", metavar="'LABEL: [--malloc POLICY] [FIT ARGS]'",
                   help="one run (repeatable); default: one run 'shipped:' with the shipped settings")
    p.add_argument("--parallel", action="store_true", help="start all runs at once (side by side)")
    p.add_argument("--max_minutes", type=float, help="also stop each training after this many minutes "
                   "(--trainer.max_time; on a busy machine, fewer steps than --steps)")
    p.add_argument("--no_val", action="store_true", help="skip validation (--trainer.limit_val_batches 0)")
    p.add_argument("--out", default="benchmarks/results/memory", help="output folder (default %(default)s)")
    p.add_argument("--rows_only", action="store_true", help="run nothing: summarize the rows OUT/LABEL.jsonl that "
                   "earlier runs of these labels recorded (e.g. runs stopped before --steps)")
    args = p.parse_args(argv)
    positive("--steps", args.steps)
    positive("--max_minutes", args.max_minutes)
    if not (ROOT / args.config).is_file() and not Path(args.config).is_file():
        raise BenchmarkError(f"--config {args.config}: no such file")
    if not sys.platform.startswith("linux"):
        raise BenchmarkError("VmRSS and glibc's mallinfo2 are Linux's: this benchmark runs on Linux only")
    runs = [parse_run(spec) for spec in (args.runs or ["shipped:"])]
    labels = [run[0] for run in runs]
    if len(set(labels)) != len(labels):
        raise BenchmarkError(f"--run labels must differ, got {', '.join(labels)}")
    results = []
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
        work = Path(tmp)
        if args.rows_only:
            for label, policy, code, _, _, fit_args in runs:
                rows = read_rows(Path(args.out) / f"{label}.jsonl")
                if not rows:
                    raise BenchmarkError(f"--rows_only: no rows in {Path(args.out) / f'{label}.jsonl'}")
                results.append(summarize(label, policy, str(code), fit_args, rows, rows[-1]["time_s"]))
        elif args.parallel:
            started = [start_run(*run, args, work) for run in runs]
            results = [finish_run(run) for run in started]
        else:
            for run in runs:
                results.append(finish_run(start_run(*run, args, work)))
                print(f"  {results[-1]['run']}: peak {results[-1]['peak_rss_gb']} GB, "
                      f"{results[-1]['tokens_per_s']} tokens/s", flush=True)
    hw = hardware()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = [{k: v for k, v in res.items() if k != "rows"} for res in results]
    result = {"benchmark": "memory", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": args.config,
              "steps": args.steps, "max_minutes": args.max_minutes, "parallel": args.parallel, "validation": not args.no_val,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "hardware": hw, "runs": summary,
              "command": shell([sys.executable, f"benchmarks/{PROG}", *argv])}
    (out / "memory.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with open(out / "memory.csv", "w", newline="", encoding="utf-8") as f:
        fields = ["run", *results[0]["rows"][0].keys()]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for res in results:
            for row in res["rows"]:
                writer.writerow({"run": res["run"], **row})
    title = f"{args.config}, {args.steps} steps; {hardware_line(hw).split(';')[0]}"
    plot(results, title, out / "memory.png")
    print(f"\n{hardware_line(hw)}; {args.config}, {args.steps} steps per run"
          f"{', side by side' if args.parallel else ''}\n")
    print(table(["run", "peak RSS GB", "RSS at each epoch end GB", "last RSS GB", "tokens/s", "tokens per CPU s",
                 "trims", "wall s"],
                [[r["run"], r["peak_rss_gb"], " / ".join(str(v) for v in r["rss_at_epoch_end_gb"].values()),
                  r["last_rss_gb"], r["tokens_per_s"], r["tokens_per_cpu_s"], r["trims"], r["wall_seconds"]]
                 for r in summary], markdown=True))
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
