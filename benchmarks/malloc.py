"""What glibc's malloc thresholds cost and save in training: tokens/s and peak resident memory per policy.

    python benchmarks/malloc.py                                   # the shipped Transformer, 60 steps per policy
    python benchmarks/malloc.py --steps 100 --policies shipped glibc
    python benchmarks/malloc.py --config translator/configs/attention.yaml

Each policy trains `translator fit --config CONFIG --trainer.max_steps N` in a fresh process (glibc
reads its thresholds once per process) with `translator.cpu_fastpaths.tune_malloc` given that
policy's thresholds ("glibc": not called, glibc's adaptive defaults), also where a float32
training would set its own (FP32_MMAP_THRESHOLD / FP32_TRIM_THRESHOLD). Reports the mean
`train/tokens_per_s` of the logged steps after the first log (warm-up excluded), the wall time of the
whole process and its peak resident memory (VmHWM), and writes OUT/malloc.json. Run from the
repository root; no validation, no checkpoints.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, BenchmarkError, hardware, hardware_line, positive, run_main, shell, table

PROG = "malloc.py"
MIB = 1 << 20

#: policy name -> (mmap threshold, trim threshold) in bytes for tune_malloc; None: glibc's own (adaptive)
POLICIES: dict[str, tuple[int, int] | None] = {
    "glibc": None,
    "1GiB-never": (1 << 30, 2**31 - 1),   # the setting shipped before 2026-12-02
    "32MiB-64MiB": (32 * MIB, 64 * MIB),
    "256MiB-512MiB": (256 * MIB, 512 * MIB),
    "64MiB-never": (64 * MIB, 2**31 - 1),  # float32: only the (tokens, vocab) logits blocks are mmap'd
    "4MiB-never": (4 * MIB, 2**31 - 1),
    "8MiB-never": (8 * MIB, 2**31 - 1),  # float32, chunked loss: the feed-forward and q/k/v blocks mmap'd too
    "16MiB-never": (16 * MIB, 2**31 - 1),
    "1MiB-never": (1 * MIB, 2**31 - 1),  # float32: every activation block of a batch over 1,024 tokens mmap'd
    "256KiB-never": (MIB // 4, 2**31 - 1),
}

#: the child: set the policy, run the translator CLI, print its peak resident memory last
CHILD = """
import json, sys
import translator.runtime as runtime
from translator import cpu_fastpaths
policy = json.loads(sys.argv[1])
# every call (the entry point's, and a float32 training's) sets this policy instead
runtime.tune_malloc = (lambda *_: False) if policy is None else (lambda *_: cpu_fastpaths.tune_malloc(*policy))
from translator.cli import main
try:
    main(sys.argv[2:])
finally:
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]
    print("VmHWM_kB", hwm, file=sys.stderr, flush=True)
"""


def run_policy(name: str, config: str, steps: int, extra: list[str], work: Path) -> dict:
    """Train `steps` steps under one policy in a fresh process; tokens/s, wall seconds, peak RSS."""
    save_dir = work / name
    cmd = [sys.executable, "-c", CHILD, json.dumps(POLICIES[name]), "fit", "--config", config,
           "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
           "--trainer.enable_checkpointing", "false", "--trainer.log_every_n_steps", "10",
           "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", "malloc",
           "--trainer.logger.init_args.version", name, *extra]
    print(f"$ {shell(cmd[:2])} '<child>' {shell(cmd[3:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    hwm = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VmHWM_kB")]
    if proc.returncode != 0 or not hwm:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise BenchmarkError(f"policy {name}: `translator fit` failed with exit code {proc.returncode}:\n{tail}")
    with open(save_dir / "malloc" / name / "metrics.csv", encoding="utf-8") as f:
        speeds = [float(row["train/tokens_per_s"]) for row in csv.DictReader(f) if row.get("train/tokens_per_s")]
    if len(speeds) < 2:
        raise BenchmarkError(f"policy {name}: {len(speeds)} logged steps; give --steps 20 or more")
    return {"policy": name, "thresholds": POLICIES[name], "tokens_per_s": round(sum(speeds[1:]) / len(speeds[1:]), 1),
            "wall_seconds": round(wall, 1), "peak_rss_gb": round(int(hwm[-1]) / (1 << 20), 2), "steps": steps}


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    else:
        extra = []
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog="Arguments after -- go to `translator fit`.")
    p.add_argument("--config", default="translator/configs/transformer.yaml", help="training config (default %(default)s)")
    p.add_argument("--steps", type=int, default=60, help="training steps per policy (default %(default)s)")
    p.add_argument("--policies", nargs="+", choices=list(POLICIES), default=list(POLICIES),
                   help="policies to run, in this order (default: all)")
    p.add_argument("--out", default="benchmarks/results/malloc", help="output folder (default %(default)s)")
    args = p.parse_args(argv)
    positive("--steps", args.steps)
    if not (ROOT / args.config).is_file() and not Path(args.config).is_file():
        raise BenchmarkError(f"--config {args.config}: no such file")
    if not sys.platform.startswith("linux"):
        raise BenchmarkError("malloc thresholds are glibc's: this benchmark runs on Linux only")
    rows = []
    with tempfile.TemporaryDirectory(prefix="malloc-") as work:
        for name in args.policies:
            rows.append(run_policy(name, args.config, args.steps, extra, Path(work)))
            print(f"  {rows[-1]}", flush=True)
    hw = hardware()
    result = {"benchmark": "malloc", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": args.config,
              "extra_fit_args": extra, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "hardware": hw,
              "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "malloc.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\n{hardware_line(hw)}; {args.config}, {args.steps} steps per policy\n")
    print(table(["policy (mmap / trim threshold)", "tokens/s", "wall s", "peak RSS GB"],
                [[r["policy"], r["tokens_per_s"], r["wall_seconds"], r["peak_rss_gb"]] for r in rows], markdown=True))
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
