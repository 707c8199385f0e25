"""Quality benchmark: train each model family with its shipped config, then score it on Multi30k test_2016_flickr.

    python benchmarks/quality.py                                   # all three families, shipped epochs
    python benchmarks/quality.py --time_budget_min 20              # each family trains for at most 20 minutes
    python benchmarks/quality.py --families transformer --epochs 3
    python benchmarks/quality.py --families transformer --checkpoint transformer=runs/x/best.ckpt   # evaluate only
    python benchmarks/quality.py --families lstm -- --trainer.limit_train_batches 10   # extra `translator fit` args
    python benchmarks/quality.py --ablations shipped subword rdrop --epochs 2 --ensemble_last 3   # the levers
    python benchmarks/quality.py --ablations shipped subword rdrop seed2 --epochs 6 --ensemble_runs shipped subword rdrop \
        --ensemble_runs shipped seed2 subword --reuse
    python benchmarks/quality.py --ablations shipped seed2 seed3 --epochs 5 --ensemble_runs --parallel 3   # 3 at once

Ablations (`--ablations`, one family): the shipped recipe and each lever of LEVERS (or levers joined
by '+', e.g. wide+seed2) switched on over it, all trained with the same CPU budget (a row that costs
more per epoch trains fewer epochs, LEVER_COST); every run, the ensemble of the runs themselves (`--ensemble_runs`), the ensemble of the
shipped run's last N epoch checkpoints and their weight average are scored with greedy search on the validation split (the
selection metric: a lever wins only there) and with greedy and beam search on the test split.
Writes OUT/ablations.json and OUT/ablations.md; `--reuse` keeps runs already finished in OUT/runs.

Training is `python -m translator fit --config translator/configs/<family>.yaml` in a subprocess
(logs, metrics and checkpoints under OUT/runs/); the checkpoint with the best validation BLEU
(else the last one) is scored with `translator evaluate` with greedy search and beam search,
all families in one call per decoder so that the BLEU-by-length plot compares them. Writes
OUT/quality.json and OUT/quality.md: BLEU and chrF with sacreBLEU signatures, parameters,
epochs, wall time, hardware and every command run. Run from the repository root.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (DATASET, FAMILIES, ROOT, TEST_SPLIT_NAME, BenchmarkError, check_checkpoint, check_data,
                     config_path, duration, fmt, hardware, hardware_line, load_config, parse_checkpoint_specs,
                     positive, run_main, shell, table)

PROG = "quality.py"

#: The levers of the ablation: the `translator fit` arguments that switch each one on over the shipped recipe.
LEVERS: dict[str, list[str]] = {
    "shipped": [],
    # Kudo 2018's setting (l = 64, alpha = 0.1): on Multi30k ~10% more tokens, 95% of pairs segmented anew
    "subword": ["--data.subword_alpha", "0.1", "--data.subword_nbest_size", "64"],
    # the R-Drop paper's alpha 5 on the sum of two passes' losses = 2.5 on their mean (Seq2SeqSystem)
    "rdrop": ["--model.rdrop_alpha", "2.5"],
    # twice the shipped label smoothing (0.1): the other model-side regularizer the issue names
    "smooth": ["--model.label_smoothing", "0.2"],
    # AdamW's decoupled weight decay (biases and norms exempt): the 0.1 of most Transformer recipes and 0.3.
    # With lr 1e-3 on a cosine (~2,400 steps over 20 epochs, sum of lr ~1.2) a weight without gradient
    # shrinks by ~11% and ~30% over the run. transformer.yaml ships 0.3 since 2026-12-03 (val 39.48 and
    # 39.42 against 38.91-39.31 for three seeds at 1e-4), attention.yaml and lstm.yaml since that evening
    # (val 39.04 against 37.65-38.48, 22.41 against 21.21-21.71; their lr 2e-3 on inverse_sqrt shrinks more):
    # wd0.3 is now the shipped recipe of every family and wd1e-4 the one before it (the older RESULTS.md rows).
    "wd0.1": ["--model.weight_decay", "0.1"],
    "wd0.3": ["--model.weight_decay", "0.3"],
    "wd1e-4": ["--model.weight_decay", "0.0001"],
    # the shipped recipe with another seed: what an ensemble of runs gains without any lever
    "seed2": ["--seed_everything", "2"],
    "seed3": ["--seed_everything", "3"],  # with shipped and seed2: the ensemble of three seeds
    # Optimisation and segmentation at the same 20 epochs (13 rows side by side on one GPU, 2026-12-04,
    # benchmarks/results/quality-sweep-gpu/): the peak learning rate (transformer.yaml ships 3e-3 since then: val
    # 42.03 and 41.81 for 3e-3 and 2e-3 against 39.64-40.53 for two seeds at 1e-3; lr1e-3 is the recipe before),
    # half the token budget per batch (twice the updates), a smaller and a larger joint vocabulary, BPE instead of
    # unigram, weight decay 1.0 and dropout 0.2.
    "lr1e-3": ["--model.lr", "0.001"],
    "lr2e-3": ["--model.lr", "0.002"],
    "lr3e-3": ["--model.lr", "0.003"],
    "tok2048": ["--data.max_tokens", "2048"],
    "voc5k": ["--data.vocab_size", "5000"],
    "voc12k": ["--data.vocab_size", "12000"],
    "bpe": ["--data.tokenizer_type", "bpe"],
    "wd1.0": ["--model.weight_decay", "1.0"],
    "drop0.2": ["--model.model.init_args.dropout", "0.2"],
    # the other shapes (Transformer only; heads of 64 as shipped): wider but shallower, 8.3 M parameters (shipped: 7.6 M)
    "wide": ["--model.model.init_args.d_model", "320", "--model.model.init_args.num_heads", "5",
             "--model.model.init_args.ff_size", "1280",
             "--model.model.init_args.num_encoder_layers", "2", "--model.model.init_args.num_decoder_layers", "2"],
    # ... and deeper but narrower, 7.8 M parameters
    "deep": ["--model.model.init_args.d_model", "192", "--model.model.init_args.num_heads", "3",
             "--model.model.init_args.ff_size", "768",
             "--model.model.init_args.num_encoder_layers", "6", "--model.model.init_args.num_decoder_layers", "6"],
    # eight heads of 32 instead of four of 64 (same parameters), GELU instead of ReLU, and dropout inside attention
    # and the feed-forward (0.1 each) beside the shipped 0.3 on embeddings and residual branches
    "heads8": ["--model.model.init_args.num_heads", "8"],
    "gelu": ["--model.model.init_args.activation", "gelu"],
    "attdrop": ["--model.model.init_args.attention_dropout", "0.1", "--model.model.init_args.activation_dropout", "0.1"],
}

#: Training cost of one epoch relative to the shipped recipe: with `--epochs N` a lever of cost c trains
#: round(N / c) epochs, so every row gets the same CPU budget (`--same_epochs` gives all N instead).
#: R-Drop runs every batch twice (two dropout masks). Subword sampling's ~10% more tokens are left at 1:
#: they are the lever's own price (benchmarks/subword_cost.py). The shapes' costs are measured: training
#: tokens/s of steps 20-100, two 1-thread trainings side by side, Zen 4 (2026-12-03): shipped ~5,300,
#: wide ~4,500 (x1.2), deep ~3,550 (x1.5: twelve small layers cost more than their FLOPs, which are x1.02).
LEVER_COST: dict[str, float] = {"rdrop": 2.0, "wide": 1.2, "deep": 1.5}

#: Levers that only one family's config understands (the others' models have no such arguments).
LEVER_FAMILY: dict[str, str] = {"wide": "transformer", "deep": "transformer", "heads8": "transformer",
                                 "gelu": "transformer", "attdrop": "transformer"}


def check_row(name: str) -> None:
    """An `--ablations` row is one lever of LEVERS or several joined by '+' (e.g. wide+seed2), each once."""
    parts = name.split("+")
    unknown = [part for part in parts if part not in LEVERS]
    if unknown or len(set(parts)) < len(parts):
        raise BenchmarkError(
            f"--ablations {name!r}: " + (f"unknown lever {unknown[0]!r}" if unknown else "a lever twice")
            + f"; give one of {', '.join(LEVERS)}, or several joined by '+'")


def lever_args(row: str) -> list[str]:
    """The `translator fit` arguments of a row: its levers' arguments in order."""
    return [arg for part in row.split("+") for arg in LEVERS[part]]


def lever_cost(row: str) -> float:
    """A row's training cost per epoch relative to the shipped recipe: the product of its levers' costs."""
    cost = 1.0
    for part in row.split("+"):
        cost *= LEVER_COST.get(part, 1.0)
    return cost


def lever_epochs(lever: str, epochs: int | None, same_epochs: bool) -> int | None:
    """The epochs a lever (row) trains for under `--epochs` (the same CPU budget unless same_epochs)."""
    if epochs is None or same_epochs:
        return epochs
    return max(1, round(epochs / lever_cost(lever)))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options before `--`, and the extra `translator fit` arguments after it."""
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog="Arguments after `--` are appended to every `translator fit` command.")
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=None,
                   help="families to benchmark (default: all three, or those given with --checkpoint)")
    p.add_argument("--src_lang", default="de", help="source language (default de)")
    p.add_argument("--tgt_lang", default="en", help="target language (default en)")
    p.add_argument("--time_budget_min", type=float, default=None,
                   help="stop each training after this many minutes (Lightning --trainer.max_time); the shipped "
                        "max_epochs (and so the LR schedule) stays unless --epochs is also given")
    p.add_argument("--epochs", type=int, default=None, help="train this many epochs (--trainer.max_epochs)")
    p.add_argument("--out", default="benchmarks/results/quality", help="output folder (default %(default)s)")
    p.add_argument("--data_dir", default=None,
                   help="folder holding multi30k/ (default $TRANSLATOR_DATA_DIR, then data/)")
    p.add_argument("--checkpoint", action="append", default=None, metavar="FAMILY=PATH",
                   help="evaluate this checkpoint instead of training FAMILY (repeatable)")
    p.add_argument("--beam_size", type=int, default=5, help="beam size of the beam-search evaluation (default 5)")
    p.add_argument("--batch_size", type=int, default=64, help="sentences decoded together (default 64)")
    p.add_argument("--max_sentences", type=int, default=None,
                   help="score only the first N test sentences (quick checks)")
    p.add_argument("--device", default=None, help="evaluation device (default: cuda when available, else cpu)")
    p.add_argument("--ablations", nargs="+", default=None, metavar="ROW",
                   help=f"train these rows for one family: levers of {{{', '.join(LEVERS)}}} (see LEVERS), or "
                        "several joined by '+', e.g. wide+seed2; with "
                        "--checkpoint ROW=PATH a row's checkpoint is given instead of trained")
    p.add_argument("--ensemble_last", type=int, default=0,
                   help="ablations: also score the ensemble and the weight average of the shipped run's last N "
                        "epochNN.ckpt (default 0 = none)")
    p.add_argument("--ensemble_runs", nargs="*", action="append", default=None, metavar="ROW",
                   help="ablations: also score the ensemble of these rows' checkpoints (default: every row); "
                        "repeat for several ensembles. Runs that differ (seed, lever) are what an ensemble gains from")
    p.add_argument("--same_epochs", action="store_true",
                   help="ablations: every lever trains --epochs epochs (default: a lever that costs c times "
                        "the shipped recipe per epoch, see LEVER_COST, trains --epochs / c: the same CPU budget)")
    p.add_argument("--reuse", action="store_true",
                   help="ablations: a run that already finished in OUT/runs is scored, not trained again")
    p.add_argument("--parallel", type=int, default=1,
                   help="ablations: train up to N rows at the same time, each with OMP_NUM_THREADS = cores / N "
                        "unless OMP_NUM_THREADS is set (default 1: one after the other, output on the console)")
    return p.parse_args(argv), extra


def display_path(path: Path) -> str:
    """path relative to the working directory when it is inside it (shorter, copy-pasteable commands)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def max_time(minutes: float) -> str:
    """Minutes -> Lightning's max_time "DD:HH:MM:SS"."""
    seconds = round(minutes * 60)
    if seconds < 1:
        raise BenchmarkError(f"--time_budget_min must be at least 1 second, got {minutes:g} minutes")
    minutes_total, s = divmod(seconds, 60)
    hours, m = divmod(minutes_total, 60)
    days, h = divmod(hours, 24)
    return f"{days:02d}:{h:02d}:{m:02d}:{s:02d}"


def run_logged(cmd: list[str], log_path: Path) -> float:
    """Run cmd, echoing its output to the console and to log_path; return wall seconds, raise on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n$ {shell(cmd)}", flush=True)
    start = time.perf_counter()
    with open(log_path, "wb") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"{PROG}: error: command failed with exit code {proc.returncode} (output in {log_path}):\n  "
              f"{shell(cmd)}", file=sys.stderr)
        raise SystemExit(1)
    return seconds


def run_parallel(jobs: dict[str, tuple[list[str], Path]], parallel: int) -> dict[str, float]:
    """Run the commands of jobs (name -> (cmd, log path)) up to `parallel` at a time, each one's output only in its
    log, with OMP_NUM_THREADS = cores / parallel unless set; return wall seconds per name, raise if any failed.

    A failure does not stop the others (their runs stay usable with --reuse); Ctrl-C stops them all."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    waiting, running, seconds, failed = list(jobs.items()), {}, {}, []
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                name, (cmd, log_path) = waiting.pop(0)
                log_path.parent.mkdir(parents=True, exist_ok=True)
                print(f"\n$ OMP_NUM_THREADS={env['OMP_NUM_THREADS']} {shell(cmd)}\n  (output in {log_path})", flush=True)
                with open(log_path, "wb") as log:
                    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                running[name] = (proc, time.perf_counter(), log_path)
            time.sleep(1)
            for name, (proc, start, log_path) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                seconds[name] = time.perf_counter() - start
                print(f"{PROG}: {name}: " + ("done" if proc.returncode == 0 else f"exit code {proc.returncode}")
                      + f" after {duration(seconds[name])}", flush=True)
                if proc.returncode != 0:
                    failed.append(f"{name} (exit code {proc.returncode}, output in {log_path}):\n  {shell(jobs[name][0])}")
    finally:  # Ctrl-C or an error here: stop what still runs (Lightning ends its step on SIGTERM first)
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    if failed:
        print(f"{PROG}: error: {len(failed)} of {len(jobs)} trainings failed: " + "\n".join(failed), file=sys.stderr)
        raise SystemExit(1)
    return seconds


def fit_command(family: str, args: argparse.Namespace, run_dir: Path, name: str, version: str,
                extra: list[str], epochs: int | None = None) -> list[str]:
    """`translator fit` of `family` into run_dir/name/version; `epochs` (default --epochs) sets max_epochs."""
    epochs = args.epochs if epochs is None else epochs
    cmd = [sys.executable, "-m", "translator", "fit", "--config", display_path(config_path(family)),
           "--data.src_lang", args.src_lang, "--data.tgt_lang", args.tgt_lang,
           "--trainer.logger.init_args.save_dir", str(run_dir),
           "--trainer.logger.init_args.name", name, "--trainer.logger.init_args.version", version]
    if args.data_dir:
        cmd += ["--data.data_dir", args.data_dir]
    if epochs is not None:
        cmd += ["--trainer.max_epochs", str(epochs)]
    if args.time_budget_min is not None:
        cmd += ["--trainer.max_time", max_time(args.time_budget_min)]
    return cmd + extra


def evaluate_command(checkpoints: dict[str, Path], args: argparse.Namespace, decoder: str, json_path: Path,
                     plot_path: Path) -> list[str]:
    return _evaluate(checkpoints, None, args, "test", decoder, json_path) + ["--plot", str(plot_path)]


def _evaluate(rows: dict[str, Path], ensemble: tuple[str, list[Path]] | None, args: argparse.Namespace,
              split: str, decoder: str, json_path: Path) -> list[str]:
    """One `translator evaluate` over every labelled checkpoint (and an ensemble row), on `split` with `decoder`."""
    cmd = [sys.executable, "-m", "translator", "evaluate", "--dataset", DATASET, "--split", split,
           "--src_lang", args.src_lang, "--tgt_lang", args.tgt_lang]
    for label, path in rows.items():
        cmd += ["--checkpoint", str(path), "--label", label]
    if ensemble is not None:
        cmd += ["--label", ensemble[0], "--ensemble", *map(str, ensemble[1])]
    cmd += ["--decode.method", decoder, "--batch_size", str(args.batch_size), "--device", args.device,
            "--json", str(json_path)]
    if decoder == "beam":
        cmd += ["--decode.beam_size", str(args.beam_size), "--decode.length_penalty", "1.0"]
    if args.data_dir:
        cmd += ["--data_dir", args.data_dir]
    if args.max_sentences:
        cmd += ["--max_sentences", str(args.max_sentences)]
    return cmd


def preflight(args: argparse.Namespace) -> tuple[list[str], dict[str, Path], dict[str, dict[str, Any]]]:
    """Check every option, the data and the given checkpoints before any work starts."""
    positive("--time_budget_min", args.time_budget_min)
    if args.time_budget_min is not None:
        max_time(args.time_budget_min)  # rejects budgets under one second
    positive("--epochs", args.epochs)
    positive("--beam_size", args.beam_size)
    positive("--batch_size", args.batch_size)
    positive("--max_sentences", args.max_sentences)
    given: dict[str, Path] = {}
    for family, path in parse_checkpoint_specs(args.checkpoint, bare_allowed=False):
        if family in given:
            raise BenchmarkError(f"two --checkpoint values for {family}: {given[family]} and {path}")
        given[family] = path
    families = list(dict.fromkeys(args.families or (list(given) if given else FAMILIES)))
    stray = [f for f in given if f not in families]
    if stray:
        raise BenchmarkError(f"--checkpoint given for {', '.join(stray)}, which is not in "
                             f"--families {' '.join(families)}")
    train = [f for f in families if f not in given]
    check_data(args.src_lang, args.tgt_lang, args.data_dir, ["test"] + (["train", "val"] if train else []))
    facts = {f: check_checkpoint(p, args.src_lang, args.tgt_lang, family=f) for f, p in given.items()}
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return families, given, facts


def find_trained(run_dir: Path) -> Path:
    """best.ckpt (best validation BLEU) when written, else last.ckpt."""
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    print(f"{PROG}: error: training wrote no checkpoint under {run_dir / 'checkpoints'}", file=sys.stderr)
    raise SystemExit(1)


def scores(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("bleu", "chrf", "signature", "tokenize", "decoding", "n_sentences", "seconds", "sentences_per_second",
            "tokens_per_second")
    return {k: report.get(k) for k in keys}


def main(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    if args.ablations:
        return ablations(args, extra)
    families, checkpoints, facts = preflight(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {
        "benchmark": "quality", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "dataset": DATASET,
        "split": TEST_SPLIT_NAME, "src_lang": args.src_lang, "tgt_lang": args.tgt_lang,
        "data_path": str(check_data(args.src_lang, args.tgt_lang, args.data_dir, ["test"]).resolve()),
        "budget": {"time_budget_min": args.time_budget_min, "epochs": args.epochs, "extra_fit_args": extra},
        "hardware": hardware(), "families": {}, "commands": [],
    }
    for family in families:
        entry = result["families"][family] = {"config": str(config_path(family).relative_to(ROOT)),
                                              "trained_here": family not in checkpoints}
        if family in checkpoints:
            entry.update(checkpoint=str(checkpoints[family]), train_seconds=None, **facts[family])
            continue
        name = f"{family}-{DATASET}-{args.src_lang}-{args.tgt_lang}"
        cmd = fit_command(family, args, out / "runs", name, stamp, extra)
        result["commands"].append(shell(cmd))
        write_json(out / "quality.json", result)  # partial results survive an interrupted run
        seconds = run_logged(cmd, out / "logs" / f"{family}-fit.log")
        run = out / "runs" / name / stamp
        checkpoints[family] = find_trained(run)
        scored = check_checkpoint(checkpoints[family], args.src_lang, args.tgt_lang, family)
        last = run / "checkpoints" / "last.ckpt"
        facts[family] = check_checkpoint(last, args.src_lang, args.tgt_lang, family) if last.is_file() else scored
        entry.update(checkpoint=str(checkpoints[family]), train_seconds=round(seconds, 1), **facts[family],
                     max_epochs=args.epochs or load_config(family)["trainer"].get("max_epochs"),
                     scored_epoch=scored["epochs"], scored_step=scored["steps"])
        write_json(out / "quality.json", result)

    decoders = {"greedy": ("greedy", "bleu_by_length_greedy.png"),
                f"beam{args.beam_size}": ("beam", "bleu_by_length.png")}
    for key, (decoder, plot) in decoders.items():
        json_path = out / f"eval-{key}.json"
        cmd = evaluate_command(checkpoints, args, decoder, json_path, out / plot)
        result["commands"].append(shell(cmd))
        run_logged(cmd, out / "logs" / f"evaluate-{key}.log")
        reports = json.loads(json_path.read_text(encoding="utf-8"))
        for report in reports if isinstance(reports, list) else [reports]:
            result["families"][report["label"]][key] = scores(report)
        result[f"plot_{key}"] = str(out / plot)
    result["signatures"] = sorted({s for e in result["families"].values() for k in decoders
                                   for s in e[k]["signature"].values()})
    write_results(out, "quality", result, to_markdown(result, list(decoders)))
    return 0


def write_results(out: Path, name: str, result: dict, markdown: str) -> None:
    """OUT/NAME.json and OUT/NAME.md, and the table on stdout."""
    write_json(out / f"{name}.json", result)
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    print("\n" + markdown)
    print(f"wrote {out / f'{name}.json'} and {out / f'{name}.md'}", file=sys.stderr)


# ---- ablations ---------------------------------------------------------------------------------
def ablation_evaluate(rows: dict[str, Path], ensemble: tuple[str, list[Path]] | None, args: argparse.Namespace,
                      split: str, decoder: str, json_path: Path) -> list[str]:
    """One `translator evaluate` over every row (and the ensemble row), on `split` with `decoder`."""
    return _evaluate(rows, ensemble, args, split, decoder, json_path)


def last_epochs(run_dir: Path, n: int) -> list[Path]:
    """The last n epochNN.ckpt of a run (what `translator fit` keeps for averaging), oldest first."""
    found = sorted((run_dir / "checkpoints").glob("epoch*.ckpt"))
    if len(found) < n:
        raise BenchmarkError(f"--ensemble_last {n}: {run_dir / 'checkpoints'} holds {len(found)} epoch checkpoints")
    return found[-n:]


def run_seconds(run_dir: Path) -> float:
    """Wall time of a finished run from its files: hparams.yaml (written at the start) to the newest checkpoint or
    metrics.csv, whichever is later (a run stopped by max_time writes its last checkpoint at its last validation,
    up to an epoch before the stop, but its CSV logger saves metrics.csv at the stop)."""
    ends = list((run_dir / "checkpoints").glob("*.ckpt"))
    if (run_dir / "metrics.csv").is_file():
        ends.append(run_dir / "metrics.csv")
    newest = max(p.stat().st_mtime for p in ends)
    return round(newest - (run_dir / "hparams.yaml").stat().st_mtime, 1)


def finished(run_dir: Path, epochs: int | None, budget_min: float | None = None) -> bool:
    """Whether a run has written its final epoch's checkpoint, or trained for its whole time budget (`--reuse`)."""
    found = sorted((run_dir / "checkpoints").glob("epoch*.ckpt"))
    if not (run_dir / "checkpoints" / "last.ckpt").is_file() or not found:
        return False
    if budget_min is not None and (run_dir / "hparams.yaml").is_file() and run_seconds(run_dir) >= 0.98 * budget_min * 60:
        return True  # stopped by --trainer.max_time
    if epochs is None:
        return True
    from translator.artifacts.checkpoint import read_checkpoint

    return int(read_checkpoint(found[-1]).get("epoch", -1)) + 1 >= epochs


def ablations(args: argparse.Namespace, extra: list[str]) -> int:
    """Train the shipped recipe and each lever with the same budget, then score them all (module docstring)."""
    families = args.families or ["transformer"]
    if len(families) != 1:
        raise BenchmarkError(f"--ablations compares levers within one family; got --families {' '.join(families)}")
    family = families[0]
    positive("--epochs", args.epochs)
    positive("--time_budget_min", args.time_budget_min)
    positive("--parallel", args.parallel)
    if args.time_budget_min is not None:
        max_time(args.time_budget_min)
    for row in args.ablations:
        check_row(row)
    foreign = [lever for row in args.ablations for lever in row.split("+")
               if LEVER_FAMILY.get(lever, family) != family]
    if foreign:
        raise BenchmarkError(f"--ablations {' '.join(foreign)}: " + ", ".join(
            f"{lever} is a {LEVER_FAMILY[lever]} lever" for lever in foreign) + f", not one for --families {family}")
    if args.ensemble_last and (args.ensemble_last < 2 or "shipped" not in args.ablations):
        raise BenchmarkError("--ensemble_last needs N >= 2 and the shipped run among --ablations")
    for members in args.ensemble_runs or []:
        stray = [m for m in members if m not in args.ablations]
        if stray or len(set(members or args.ablations)) < 2:
            raise BenchmarkError(f"--ensemble_runs {' '.join(members)}: give two or more of the --ablations rows "
                                 f"({' '.join(args.ablations)})" + (f"; not a row: {' '.join(stray)}" if stray else ""))
    given = {}
    for spec in args.checkpoint or []:
        lever, sep, path = spec.partition("=")
        if not sep or lever not in args.ablations:
            raise BenchmarkError(f"--checkpoint {spec!r}: with --ablations write ROW=PATH, ROW one of "
                                 f"{', '.join(args.ablations)}")
        if not Path(path).is_file():
            raise BenchmarkError(f"--checkpoint {spec!r}: no such file")
        given[lever] = Path(path)
    check_data(args.src_lang, args.tgt_lang, args.data_dir, ["test", "val"] + (["train"] if len(given) < len(args.ablations) else []))
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "quality-ablations", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "family": family,
        "dataset": DATASET, "src_lang": args.src_lang, "tgt_lang": args.tgt_lang, "levers": {},
        "budget": {"time_budget_min": args.time_budget_min, "epochs": args.epochs, "extra_fit_args": extra,
                   "same_epochs": args.same_epochs},
        "hardware": hardware(), "rows": {}, "commands": [],
    }
    rows: dict[str, Path] = {}
    runs: dict[str, Path] = {}
    trained: dict[str, float | None] = {}  # lever -> wall seconds (None: reused, read off its files)
    jobs: dict[str, tuple[list[str], Path]] = {}
    for lever in args.ablations:
        entry = result["rows"][lever] = {"lever": lever, "fit_args": lever_args(lever)}
        if lever in given:
            rows[lever] = given[lever]
            runs[lever] = given[lever].parent.parent
            entry.update(checkpoint=str(given[lever]), train_seconds=None, trained_here=False,
                         **check_checkpoint(given[lever], args.src_lang, args.tgt_lang, family))
            continue
        name = f"{family}-{lever}"
        epochs = lever_epochs(lever, args.epochs, args.same_epochs)
        version = f"epochs{epochs}" if epochs else (f"min{args.time_budget_min:g}" if args.time_budget_min
                                                    else "shipped")
        run = runs[lever] = out / "runs" / name / version
        cmd = fit_command(family, args, out / "runs", name, version, [*lever_args(lever), *extra], epochs)
        result["commands"].append(shell(cmd))
        trained[lever] = None
        if not (args.reuse and finished(run, epochs, args.time_budget_min)):
            jobs[lever] = (cmd, out / "logs" / f"{name}-fit.log")
    write_json(out / "ablations.json", result)
    if args.parallel > 1 and len(jobs) > 1:
        result["budget"]["parallel"] = min(args.parallel, len(jobs))
        trained.update(run_parallel(jobs, args.parallel))
    else:
        trained.update({lever: run_logged(cmd, log) for lever, (cmd, log) in jobs.items()})
    for lever, seconds in trained.items():
        run = runs[lever]
        entry = result["rows"][lever]
        seconds = run_seconds(run) if seconds is None else round(seconds, 1)
        rows[lever] = find_trained(run)
        scored = check_checkpoint(rows[lever], args.src_lang, args.tgt_lang, family)
        # the newest epochNN.ckpt: last.ckpt is rewritten only when best.ckpt is (save_last of the BLEU monitor)
        newest = sorted((run / "checkpoints").glob("epoch*.ckpt"))[-1:] or [run / "checkpoints" / "last.ckpt"]
        facts = check_checkpoint(newest[0], args.src_lang, args.tgt_lang, family) if newest[0].is_file() else scored
        entry.update(checkpoint=str(rows[lever]), train_seconds=seconds, trained_here=True, **facts,
                     scored_epoch=scored["epochs"])
    rows = {lever: rows[lever] for lever in args.ablations}  # the order of --ablations, given or trained
    ensembles: list[tuple[str, list[Path]]] = []
    if args.ensemble_last:
        members = last_epochs(runs["shipped"], args.ensemble_last)
        for path in members:
            rows[f"shipped {path.stem}"] = path
        average = out / f"shipped-average-last{args.ensemble_last}.ckpt"
        cmd = [sys.executable, "-m", "translator", "average", *map(str, members), "--output", str(average)]
        result["commands"].append(shell(cmd))
        run_logged(cmd, out / "logs" / "average.log")
        rows[f"shipped average of last {args.ensemble_last}"] = average
        ensembles.append((f"shipped ensemble of last {args.ensemble_last}", members))
    for members in args.ensemble_runs or []:
        members = list(dict.fromkeys(members or args.ablations))
        ensembles.append((f"ensemble of {' + '.join(members)}", [rows[lever] for lever in members]))
    evaluations = {"val greedy": ("val", "greedy"), "test greedy": ("test", "greedy"),
                   f"test beam{args.beam_size}": ("test", "beam")}
    for key, (split, decoder) in evaluations.items():
        # the rows and the first ensemble in one call; `translator evaluate` takes one --ensemble per call
        for i, ensemble in enumerate(ensembles or [None]):
            stem = f"ablations-{key.replace(' ', '-')}" + (f"-ensemble{i + 1}" if i else "")
            json_path = out / f"{stem}.json"
            cmd = ablation_evaluate(rows if i == 0 else {}, ensemble, args, split, decoder, json_path)
            result["commands"].append(shell(cmd))
            run_logged(cmd, out / "logs" / f"{stem.replace('ablations-', 'ablations-evaluate-')}.log")
            reports = json.loads(json_path.read_text(encoding="utf-8"))
            for report in reports if isinstance(reports, list) else [reports]:
                result["rows"].setdefault(report["label"], {"lever": report["label"]})[key] = scores(report)
            write_json(out / "ablations.json", result)
    val = {label: e["val greedy"]["bleu"] for label, e in result["rows"].items() if "val greedy" in e}
    result["selected_on_val"] = max(val, key=val.get)
    write_results(out, "ablations", result, ablations_markdown(result, list(evaluations)))
    return 0


def ablations_markdown(result: dict[str, Any], evaluations: list[str]) -> str:
    """The ablation table (val BLEU is the selection metric), budget, hardware and commands."""
    header = ["row", "fit args over the shipped recipe", "epochs", "training wall time"]
    for key in evaluations:
        header += [f"{key} BLEU"] + ([f"{key} chrF"] if key.startswith("test") else [])
    rows = []
    for label, e in result["rows"].items():
        args = " ".join(e.get("fit_args") or []) if "fit_args" in e else "(decoding only)"
        epochs = e.get("epochs")
        if e.get("scored_epoch") not in (None, epochs):
            epochs = f"{epochs} (scored: {e['scored_epoch']})"
        row = [label, f"`{args}`" if args and args != "(decoding only)" else args or "-", epochs,
               duration(e.get("train_seconds")) if e.get("train_seconds") else "-"]
        for key in evaluations:
            got = e.get(key) or {}
            row += [fmt(got.get("bleu"), 2)] + ([fmt(got.get("chrf"), 2)] if key.startswith("test") else [])
        rows.append(row)
    budget = result["budget"]
    scaled = "" if budget.get("same_epochs", True) or not budget["epochs"] else (
        " (divided by the lever's cost per epoch for the same CPU budget: "
        + ", ".join(f"{lever} ×{cost:g}" for lever, cost in LEVER_COST.items()) + ")")
    limits = [f"max_epochs {budget['epochs']}{scaled}" if budget["epochs"] else None,
              f"at most {budget['time_budget_min']:g} min" if budget["time_budget_min"] else None,
              f"{budget['parallel']} trained at the same time (so their wall times are shared)"
              if budget.get("parallel") else None]
    return "\n".join([
        f"# Ablations: {result['family']} on {result['dataset']} {result['src_lang']}→{result['tgt_lang']}", "",
        f"Run {result['created']}. Every trained row: the shipped config with "
        + (", ".join(x for x in limits if x) or "its shipped budget")
        + (f", extra fit args `{' '.join(budget['extra_fit_args'])}`" if budget["extra_fit_args"] else "")
        + "; its best-validation-BLEU checkpoint is scored. Selected on validation (greedy BLEU): "
        f"**{result['selected_on_val']}**. Test scores are reported, never used to choose.", "",
        table(header, rows, markdown=True), "",
        f"Hardware: {hardware_line(result['hardware'])}", "",
        "Commands:", "", "```", *result["commands"], "```", "",
    ])


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def to_markdown(result: dict[str, Any], decoders: list[str]) -> str:
    """The result as a Markdown report: one table, signatures, budget, hardware and the commands."""
    header = ["family", "parameters", "epochs", "steps", "training wall time"]
    for key in decoders:
        header += [f"{key} BLEU", f"{key} chrF"]
    header += [f"{decoders[-1]} sent/s"]
    rows = []
    for family, e in result["families"].items():
        epochs = e.get("epochs")
        if e.get("scored_epoch") is not None and e["scored_epoch"] != epochs:
            epochs = f"{epochs} (scored: {e['scored_epoch']})"
        row = [family, f"{e['parameters'] / 1e6:.2f}M", epochs, e.get("steps"),
               duration(e.get("train_seconds")) if e["trained_here"] else "(given checkpoint)"]
        for key in decoders:
            row += [fmt(e[key]["bleu"], 2), fmt(e[key]["chrf"], 2)]
        rows.append(row + [fmt(e[decoders[-1]]["sentences_per_second"], 1)])
    n = next(iter(result["families"].values()))[decoders[0]]["n_sentences"]
    budget = result["budget"]
    limits = [f"at most {budget['time_budget_min']:g} min" if budget["time_budget_min"] else None,
              f"max_epochs {budget['epochs']}" if budget["epochs"] else None]
    lines = [
        f"# Quality: {result['dataset']} {result['src_lang']}→{result['tgt_lang']}, {result['split']} "
        f"({n} sentences)", "",
        f"Run {result['created']}. Training: shipped configs, "
        + (", ".join(x for x in limits if x) or "shipped max_epochs")
        + (f", extra fit args `{' '.join(budget['extra_fit_args'])}`" if budget["extra_fit_args"] else "")
        + "; the checkpoint with the best validation BLEU is scored (else the last one).", "",
        table(header, rows, markdown=True), "",
        "sacreBLEU signatures:", "",
        *[f"- `{s}`" for s in result["signatures"]], "",
        f"Hardware: {hardware_line(result['hardware'])}", "",
        f"![BLEU by source length, {decoders[-1]}]({Path(result[f'plot_{decoders[-1]}']).name})", "",
        "Commands:", "", "```", *result["commands"], "```", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(PROG, main)
