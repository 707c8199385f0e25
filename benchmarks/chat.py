"""Chat decoding benchmark: every decoding choice on a chat checkpoint's validation split, one table.

    python benchmarks/chat.py --checkpoint dailydialog=CKPT --checkpoint chatbot-ko=CKPT --out DIR
    python benchmarks/chat.py --train --out DIR          # train each shipped chat config first
    python benchmarks/chat.py --checkpoint chatbot-ko=CKPT --sweep --max_sentences 500 --out DIR
    python benchmarks/chat.py --checkpoint dailydialog=CKPT --backward dailydialog=BACKWARD_CKPT --betas 0.25 0.5 1 2 --out DIR

For each checkpoint it runs `translator evaluate` (the real code path) once per decoding choice
in CHOICES, and writes DIR/chat.json and DIR/chat.md: BLEU, BLEU-1/2 (mean smoothed sentence BLEU,
as dialogue papers report it), chrF, distinct-1/2 (and their share of the references'), generic
share, most frequent reply, mean length (and the references'), 4-gram entropy, reference
perplexity, hits@1 of 20 by per-token likelihood, by the anti-LM score and (with a backward model)
by the MMI-bidi score (translator/evaluation/relevance.py, on --max_pairs seeded pairs), seconds per reply
and wall time per choice, plus the replies to fixed prompts per model (seeded; 12 English, the 8
Korean of the chat issue). `--sweep` adds the anti-LM grid (lambda x gamma) used to pick the
defaults in translator.decoding.CHAT_DECODING. `--backward DATASET=CKPT` adds the MMI-bidi
choices (the checkpoint's MMI-bidi default with each of `--betas`, `--bidi_candidates`, `--bidi_gammas`) and
decodes the prompts with the backward
model. hits@1 depends on the model and on the ranking weights only (lambda and beta of a choice,
1 where it has none), so it is computed once per distinct pair of weights and shown in every row
that ranks with them.

Selection rule for the shipped default (validation split only): among the choices whose replies
meet the diversity targets (distinct-2 >= 40% of the references', generic share <= 10%, the most
frequent reply <= 2%, mean length 60%-125% of the references'), the one with the highest chrF;
chat.md names it per model (the MMI-bidi beta is chosen the same way among the bidi choices).
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

from translator.artifacts.checkpoint import CheckpointMeta  # noqa: E402
from translator.decoding import CHAT_DECODING, DecodeConfig  # noqa: E402
from translator.evaluation.relevance import DEFAULT_K, DEFAULT_MAX_PAIRS  # noqa: E402

CONFIGS = {"dailydialog": "chat_dailydialog.yaml", "chatbot-ko": "chat_chatbot_ko.yaml"}
PROMPTS = {
    "dailydialog": ["Hi, how are you doing today?", "Do you want to go to the movies tonight?",
                    "I lost my wallet on the bus.", "What time does the store open?",
                    "Thank you so much for your help!", "Would you like some coffee?",
                    "What do you do for a living?", "I have a terrible headache.",
                    "How much does this jacket cost?", "Where is the nearest bank?",
                    "It's raining again today.", "I'm moving to a new apartment next week."],
    "chatbot-ko": ["안녕하세요", "여자친구랑 헤어졌어", "가상화폐 쫄딱 망함", "오늘 너무 피곤해", "주말에 뭐 하지?",
                   "배고파", "시험 망쳤어", "내일 면접이야"],
}
#: The decoding choices compared; "default" is CHAT_DECODING itself, "recipe" what the checkpoint decodes with.
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
    "recipe": None,  # the checkpoint's own default: CHAT_DECODING with the decoding its recipe recorded (`label`)
}
SWEEP_LAMBDAS = (0.0, 0.15, 0.3, 0.5)
SWEEP_GAMMAS = (0.0, 0.3, 0.6)
SWEEP_CANDIDATES = (8,)
BETAS = (0.5, 1.0, 2.0)
COLUMNS = ("bleu", "bleu_1", "bleu_2", "chrf", "distinct_1", "distinct_2", "distinct_2_ratio", "generic_share",
           "top_reply_share", "mean_length", "reference_mean_length", "entropy_4", "reference_perplexity",
           "hits1_loglik", "hits1_antilm", "hits1_mmi", "seconds_per_reply", "seconds")
#: What the references row shows in each column (the human ceiling); other columns show "-".
REFERENCE_CELLS = {"distinct_1": "reference_distinct_1", "distinct_2": "reference_distinct_2",
                   "generic_share": "reference_generic_share", "top_reply_share": "reference_top_reply_share",
                   "mean_length": "reference_mean_length", "reference_mean_length": "reference_mean_length",
                   "entropy_4": "reference_entropy_4"}
RELEVANCE_KEYS = ("hits1_loglik", "hits1_antilm", "hits1_mmi", "hits_k", "relevance_pairs", "relevance_lm_weight",
                  "relevance_backward_weight")


#: Replies may be at most this much longer than the human ones on average: chrF leans on recall, so longer
#: replies score higher while they ramble (DailyDialog, 10-epoch model: gamma 1 gives chrF 15.3 at 1.6x the human
#: length against 13.6 at 1.2x, and replies off the point; benchmarks/RESULTS.md, "The one-hour DailyDialog recipe").
MAX_LENGTH_RATIO = 1.25


def meets_targets(r: dict[str, Any]) -> bool:
    """The diversity targets of the chat issue (validation split), and a mean length within 60%-125% of the human."""
    return (r["distinct_2_ratio"] is not None and r["distinct_2_ratio"] >= 0.40 and r["generic_share"] <= 0.10
            and r["top_reply_share"] <= 0.02
            and 0.6 * r["reference_mean_length"] <= r["mean_length"] <= MAX_LENGTH_RATIO * r["reference_mean_length"])


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


def replies(checkpoint: Path, dataset: str, backward: Path | None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The shipped default decoding (CHAT_BIDI_DECODING with a backward model) and its replies to the prompts."""
    from translator.inference.chatbot import Chatbot

    bot = Chatbot.from_checkpoint(checkpoint, backward=backward)
    return bot.default_decoding.summary(), [(m, bot.reply([], m)) for m in PROMPTS[dataset]]


def knobs(config: DecodeConfig) -> str:
    """`sampleN lambda=L gamma=G`: what tells a chat decoding from CHAT_DECODING, for the choice names."""
    return f"sample{config.num_candidates} lambda={config.lm_weight:g} gamma={config.length_bonus:g}"


def run_choice(checkpoint: Path, dataset: str, name: str, config: DecodeConfig, args: argparse.Namespace,
               out: Path, backward: Path | None, relevance: dict[tuple[Any, ...], dict[str, Any]]
               ) -> dict[str, Any]:
    """One decoding choice through `translator evaluate`; hits@1 is computed the first time its weights occur."""
    from translator.evaluation.command import evaluate

    start = time.perf_counter()
    limit = None if name.startswith(("default", "recipe")) and not args.subset_default else args.max_sentences
    weights = (config.lm_weight or 1.0, config.backward_weight or 1.0, limit)  # what evaluate ranks with, and on
    known = relevance.get(weights)
    report = evaluate([str(checkpoint)], dataset=dataset, split="val", decode=config, data_dir=args.data_dir,
                      max_sentences=limit, batch_size=args.batch_size, label=name, backward=backward,
                      hits_k=0 if known else args.hits_k, max_pairs=args.max_pairs,
                      json=str(out / f"{dataset}-{_slug(name)}.json"))[0]
    if known:
        report.update(known)
    elif args.hits_k:
        relevance[weights] = {k: report.get(k) for k in RELEVANCE_KEYS}
    report["wall_seconds"] = time.perf_counter() - start
    report["choice"] = name
    report["meets_targets"] = meets_targets(report)
    return report


def selected(reports: list[dict[str, Any]], bidi: bool) -> str | None:
    """The selection rule of the module docstring over the (MMI-bidi, when `bidi`) choices: its name, or None."""
    pool = [r for r in reports if r["meets_targets"] and bool(r["decoding"].get("backward_weight")) == bidi]
    return max(pool, key=lambda r: r["chrf"])["choice"] if pool else None


def _by_dataset(specs: list[str], flag: str) -> dict[str, Path]:
    """DATASET=CKPT arguments as {dataset: path}, each checked."""
    given = {}
    for spec in specs:
        dataset, sep, path = spec.partition("=")
        if not sep or dataset not in CONFIGS:
            raise BenchmarkError(f"{flag} takes DATASET=CKPT with DATASET one of {list(CONFIGS)}, got {spec!r}")
        if not Path(path).is_file():
            raise BenchmarkError(f"checkpoint not found: {path}")
        given[dataset] = Path(path)
    return given


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
        rows.append(["references (human)", ref["n_sentences"],
                     *["1.000" if c == "distinct_2_ratio" else _cell(ref.get(REFERENCE_CELLS.get(c, "")))
                       for c in COLUMNS], "-", ref["reference_top_reply"][:40]])
        lines.append(table(["decoding", "n", *COLUMNS, "targets", "most frequent reply"], rows, markdown=True))
        if ref.get("hits_k"):
            lines.append(f"\nhits@1 of {ref['hits_k']} on {ref['relevance_pairs']} seeded pairs (chance "
                         f"{1 / ref['hits_k']:.3f}); each row ranks with its own lambda and beta, 1 where it has none.")
        for bidi, what in ((False, "decoding"), (True, "MMI-bidi decoding (beta)")):
            if bidi and not entry.get("backward"):
                continue
            lines.append(f"\nSelected {what} by the rule (targets met, highest chrF): "
                         f"{selected(entry['reports'], bidi) or 'none meets the targets'}")
        lines.append(f"\nPrompts, shipped default decoding `{entry['prompt_decoding']}`:\n")
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
    parser.add_argument("--backward", action="append", default=[], metavar="DATASET=CKPT",
                        help="a backward model p(message | reply) of that dataset's chat model: adds the MMI-bidi "
                             "choices, hits1_mmi and decodes the prompts with it (repeatable)")
    parser.add_argument("--betas", type=float, nargs="+", default=list(BETAS),
                        help="MMI-bidi weights beta tried over the checkpoint's MMI-bidi default (with --backward)")
    parser.add_argument("--bidi_candidates", type=int, nargs="+", default=None,
                        help="candidates of the MMI-bidi choices (default: the checkpoint's recipe's)")
    parser.add_argument("--bidi_gammas", type=float, nargs="+", default=None,
                        help="length bonus gamma of the MMI-bidi choices (default: the checkpoint's recipe's)")
    parser.add_argument("--hits_k", type=int, default=DEFAULT_K, help="hits@1 of k (0 = no relevance)")
    parser.add_argument("--max_pairs", type=int, default=DEFAULT_MAX_PAIRS,
                        help="validation pairs ranked for hits@1 (seeded sample; 0 = all)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    unknown = [c for c in args.choices if c not in CHOICES]
    if unknown:
        raise BenchmarkError(f"unknown choice(s) {unknown}; choose from {list(CHOICES)}")
    given, backwards = _by_dataset(args.checkpoint, "--checkpoint"), _by_dataset(args.backward, "--backward")
    args.out.mkdir(parents=True, exist_ok=True)
    hw = hardware()
    results: dict[str, Any] = {"hardware": hardware_line(hw), "models": {}}
    for dataset in args.datasets:
        if dataset not in given and not args.train:
            continue
        checkpoint = given.get(dataset) or train(dataset, args.out, args.train_args.split())
        backward = backwards.get(dataset)
        meta = CheckpointMeta.from_path(checkpoint)
        recipe = meta.default_decoding()
        choices = {(f"recipe ({knobs(recipe)})" if name == "recipe" else name):
                   (recipe if name == "recipe" else CHOICES[name]) for name in args.choices}
        if backward is not None:  # the checkpoint's own MMI-bidi default (its recipe's candidates), each beta
            bidi = meta.default_decoding(backward=True)
            for n in args.bidi_candidates or [bidi.num_candidates]:
                for gamma in args.bidi_gammas or [bidi.length_bonus]:
                    for beta in args.betas:
                        config = bidi.replace(candidates=n, length_bonus=gamma, backward_weight=beta)
                        choices[f"bidi {knobs(config)} beta={beta}"] = config
        if args.sweep:
            for n in args.candidates:
                for lam in args.lambdas:
                    for gamma in args.gammas:
                        choices[f"sample{n} lambda={lam} gamma={gamma}"] = CHAT_DECODING.replace(
                            candidates=n, lm_weight=lam, length_bonus=gamma)
        relevance: dict[tuple[Any, ...], dict[str, Any]] = {}
        reports = [run_choice(checkpoint, dataset, name, config, args, args.out, backward, relevance)
                   for name, config in choices.items()]
        prompt_decoding, prompts = replies(checkpoint, dataset, backward)
        results["models"][dataset] = {"checkpoint": str(checkpoint), "backward": str(backward) if backward else None,
                                      "reports": reports, "prompt_decoding": prompt_decoding, "prompts": prompts}
        (args.out / "chat.json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (args.out / "chat.md").write_text(markdown(results), encoding="utf-8")
    if not results["models"]:
        raise BenchmarkError("nothing to do: give --checkpoint DATASET=CKPT or --train")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    run_main("benchmarks/chat.py", main)
