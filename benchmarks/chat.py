"""Chat decoding benchmark: every decoding choice on a chat checkpoint's validation split, one table.

    python benchmarks/chat.py --checkpoint dailydialog=CKPT --checkpoint chatbot-ko=CKPT --out DIR
    python benchmarks/chat.py --train --out DIR          # train each shipped chat config first
    python benchmarks/chat.py --checkpoint chatbot-ko=CKPT --sweep --max_sentences 500 --out DIR

For each checkpoint it runs `translator evaluate` (the real code path) once per decoding choice
in CHOICES, and writes DIR/chat.json and DIR/chat.md: BLEU, chrF, distinct-1/2 (and their share of
the references'), generic share, most frequent reply, mean length (and the references'),
4-gram entropy, reference perplexity and wall time per choice, plus the replies to five fixed
prompts per model (seeded). `--sweep` adds the anti-LM grid (lambda x gamma) used to pick the
defaults in translator.decoding.CHAT_DECODING.

Selection rule for the shipped default (validation split only): among the choices whose replies
meet the diversity targets (distinct-2 >= 40% of the references', generic share <= 10%, the most
frequent reply <= 2%, mean length >= 60% of the references'), the one with the highest chrF.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, BenchmarkError, hardware, hardware_line, run_main, table  # noqa: E402

from translator.decoding import CHAT_DECODING, DecodeConfig  # noqa: E402

CONFIGS = {"dailydialog": "chat_dailydialog.yaml", "chatbot-ko": "chat_chatbot_ko.yaml"}
PROMPTS = {
    "dailydialog": ["Hi, how are you doing today?", "Do you want to go to the movies tonight?",
                    "I lost my wallet on the bus.", "What time does the store open?",
                    "Thank you so much for your help!"],
    "chatbot-ko": ["안녕하세요", "여자친구랑 헤어졌어", "가상화폐 쫄딱 망함", "오늘 너무 피곤해", "주말에 뭐 하지?"],
}
#: The decoding choices compared; "default" is CHAT_DECODING itself.
CHOICES: dict[str, DecodeConfig] = {
    "greedy": DecodeConfig(method="greedy", no_repeat_ngram_size=3, forbid_unk=True, min_len=1, max_len_a=1.0,
                           max_len_b=40),
    "beam5": DecodeConfig(method="beam", beam_size=5, length_penalty=1.0, no_repeat_ngram_size=3, forbid_unk=True,
                          min_len=1, max_len_a=1.0, max_len_b=40),
    "beam5+antiLM": CHAT_DECODING.replace(method="beam", beam_size=5, length_penalty=1.0),
    "sample": CHAT_DECODING.replace(candidates=0, lm_weight=0.0, length_bonus=0.0),
    "sample8+rank": CHAT_DECODING.replace(candidates=8, lm_weight=0.0, length_bonus=0.0),
    "sample8 lambda=0.3 gamma=0.3": CHAT_DECODING.replace(candidates=8, lm_weight=0.3, length_bonus=0.3),
    "default (sample4 lambda=1 gamma=1)": CHAT_DECODING,
}
SWEEP_LAMBDAS = (0.0, 0.15, 0.3, 0.5)
SWEEP_GAMMAS = (0.0, 0.3, 0.6)
SWEEP_CANDIDATES = (8,)
COLUMNS = ("bleu", "chrf", "distinct_1", "distinct_2", "distinct_2_ratio", "generic_share", "top_reply_share",
           "mean_length", "reference_mean_length", "entropy_4", "reference_perplexity", "seconds")


def meets_targets(r: dict[str, Any]) -> bool:
    """The diversity targets of the chat issue (validation split)."""
    return (r["distinct_2_ratio"] is not None and r["distinct_2_ratio"] >= 0.40 and r["generic_share"] <= 0.10
            and r["top_reply_share"] <= 0.02 and r["mean_length"] >= 0.6 * r["reference_mean_length"])


def train(dataset: str, out: Path, extra: list[str]) -> Path:
    """Train the shipped config of `dataset` into out/runs/ and return its best.ckpt."""
    save = out / "runs" / dataset
    cmd = [sys.executable, "-m", "translator.cli", "fit", "--config", str(ROOT / "translator/configs" / CONFIGS[dataset]),
           "--trainer.logger.init_args.save_dir", str(save), *extra]
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    found = sorted(save.glob("*/version_*/checkpoints/best.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise BenchmarkError(f"training {dataset} wrote no best.ckpt under {save}")
    return found[-1]


def replies(checkpoint: Path, dataset: str, config: DecodeConfig) -> list[tuple[str, str]]:
    from translator.inference import Chatbot

    bot = Chatbot.from_checkpoint(checkpoint)
    return [(m, bot.reply([], m, config)) for m in PROMPTS[dataset]]


def run_choice(checkpoint: Path, dataset: str, name: str, config: DecodeConfig, args: argparse.Namespace,
               out: Path) -> dict[str, Any]:
    from translator.evaluate_cmd import evaluate

    start = time.perf_counter()
    limit = None if name.startswith("default") and not args.subset_default else args.max_sentences
    report = evaluate([str(checkpoint)], dataset=dataset, split="val", decode=config, data_dir=args.data_dir,
                      max_sentences=limit, batch_size=args.batch_size, label=name,
                      json=str(out / f"{dataset}-{_slug(name)}.json"))[0]
    report["wall_seconds"] = time.perf_counter() - start
    report["choice"] = name
    report["meets_targets"] = meets_targets(report)
    return report


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Chat decoding on the validation splits\n\n{results['hardware']}\n"]
    for dataset, entry in results["models"].items():
        lines.append(f"## {dataset}: `{entry['checkpoint']}`\n")
        rows = []
        for r in entry["reports"]:
            rows.append([r["choice"], r["n_sentences"], *[_cell(r.get(c)) for c in COLUMNS],
                         "yes" if r["meets_targets"] else "no", r["top_reply"][:40]])
        ref = entry["reports"][0]
        rows.append(["references (human)", ref["n_sentences"], "-", "-", _cell(ref["reference_distinct_1"]),
                     _cell(ref["reference_distinct_2"]), "1.000", _cell(ref["reference_generic_share"]),
                     _cell(ref["reference_top_reply_share"]), _cell(ref["reference_mean_length"]),
                     _cell(ref["reference_mean_length"]), _cell(ref["reference_entropy_4"]), "-", "-", "-",
                     ref["reference_top_reply"][:40]])
        lines.append(table(["decoding", "n", *COLUMNS, "targets", "most frequent reply"], rows, markdown=True))
        lines.append("\nFive prompts, shipped default decoding (seed 0):\n")
        lines += [f"- > {m}\n  < {r}" for m, r in entry["prompts"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DATASET=CKPT",
                        help="a chat checkpoint and the dataset it was trained on (repeatable)")
    parser.add_argument("--train", action="store_true", help="train the shipped config of each dataset first")
    parser.add_argument("--train_args", default="", help="extra `translator fit` arguments when training")
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--choices", nargs="+", default=list(CHOICES), help="decoding choices to run")
    parser.add_argument("--max_sentences", type=int, default=None,
                        help="evaluate the non-default choices on the first N validation pairs only")
    parser.add_argument("--subset_default", action="store_true", help="also cut the default choice to N")
    parser.add_argument("--sweep", action="store_true", help="add the anti-LM lambda x gamma x candidates grid")
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(SWEEP_LAMBDAS))
    parser.add_argument("--gammas", type=float, nargs="+", default=list(SWEEP_GAMMAS))
    parser.add_argument("--candidates", type=int, nargs="+", default=list(SWEEP_CANDIDATES))
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    unknown = [c for c in args.choices if c not in CHOICES]
    if unknown:
        raise BenchmarkError(f"unknown choice(s) {unknown}; choose from {list(CHOICES)}")
    given = {}
    for spec in args.checkpoint:
        dataset, sep, path = spec.partition("=")
        if not sep or dataset not in CONFIGS:
            raise BenchmarkError(f"--checkpoint takes DATASET=CKPT with DATASET one of {list(CONFIGS)}, got {spec!r}")
        if not Path(path).is_file():
            raise BenchmarkError(f"checkpoint not found: {path}")
        given[dataset] = Path(path)
    args.out.mkdir(parents=True, exist_ok=True)
    hw = hardware()
    results: dict[str, Any] = {"hardware": hardware_line(hw), "models": {}}
    for dataset in args.datasets:
        if dataset not in given and not args.train:
            continue
        checkpoint = given.get(dataset) or train(dataset, args.out, args.train_args.split())
        choices = {name: CHOICES[name] for name in args.choices}
        if args.sweep:
            for n in args.candidates:
                for lam in args.lambdas:
                    for gamma in args.gammas:
                        choices[f"sample{n} lambda={lam} gamma={gamma}"] = CHAT_DECODING.replace(
                            candidates=n, lm_weight=lam, length_bonus=gamma)
        reports = [run_choice(checkpoint, dataset, name, config, args, args.out) for name, config in choices.items()]
        results["models"][dataset] = {"checkpoint": str(checkpoint), "reports": reports,
                                      "prompts": replies(checkpoint, dataset, CHAT_DECODING)}
        (args.out / "chat.json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (args.out / "chat.md").write_text(markdown(results), encoding="utf-8")
    if not results["models"]:
        raise BenchmarkError("nothing to do: give --checkpoint DATASET=CKPT or --train")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    run_main("benchmarks/chat.py", main)
