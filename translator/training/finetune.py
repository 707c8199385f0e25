"""Fine-tuning: a new run that starts from a trained checkpoint's weights (`--model.init_from CKPT`).

The rules, each decided here:

- The tokenizer is the checkpoint's, never retrained: the data module reads it from the checkpoint
  (`--data.tokenizer_path CKPT`, set here) and encodes the new corpus with it; another tokenizer is refused.
- The model configuration is the checkpoint's: it replaces the config file's `model.model`, and a
  `--model.model.*` value that differs from the checkpoint's is refused with one message (as a resume does).
- The optimizer and the schedule are new (no optimizer state is read), with fine-tuning defaults unless
  `--model.lr`, `--model.warmup_steps` or `--model.lr_schedule` is given on the command line:
  a peak `FINETUNE_LR_SCALE` times the parent's, `FINETUNE_WARMUP_STEPS` of warm-up, cosine to zero at the
  end of the fine-tuning run. A config file's values are the from-scratch recipe and do not count.
- The parent must be a translator checkpoint of the same task as the new data (translation or chat).
- Before training, `coverage` says how well the tokenizer covers the new data: the share of byte-fallback
  and `<unk>` pieces and the pieces per word, against the parent's own training data; above
  `WARN_FALLBACK_SHARE` or `WARN_PIECES_RATIO` it warns.
- Every checkpoint of the run records its parent (`lineage`: path, sha256, data, and the parent's own
  parent), which `translator evaluate` and the app show.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from translator.artifacts.checkpoint import CheckpointMeta, is_exported, read_checkpoint
from translator.atomic import file_sha256
from translator.data.registry import SPLIT_SEED, get_spec, iter_pairs
from translator.data.token_store import seeded_sample
from translator.tasks import DEFAULT_CONTEXT_TURNS, get_task
from translator.tokenizer import Tokenizer
from translator.training.callbacks import note

#: Fine-tuning peak learning rate = this times the parent's (its schedule restarts from zero, never at the peak).
#: Chosen on val (benchmarks/RESULTS.md, "Fine-tuning: Tatoeba -> Multi30k en->fr at full scale"): a Tatoeba
#: Transformer fine-tuned on Multi30k en->fr for 1,280 updates reached val BLEU 51.5 at 1.0x against 47.2 at 0.3x.
FINETUNE_LR_SCALE = 1.0
#: Warm-up of a fine-tuning run, in optimizer steps.
FINETUNE_WARMUP_STEPS = 100
FINETUNE_SCHEDULE = "cosine"
#: Warn when more than this share of the new data's pieces are byte-fallback or <unk> pieces.
WARN_FALLBACK_SHARE = 0.01
#: Warn when the new data needs this many times the pieces per word of the parent's own data.
WARN_PIECES_RATIO = 1.3
#: Sentences (per side) the coverage report reads from each corpus.
COVERAGE_SAMPLE = 2000
#: The options a fine-tuning run sets itself unless given on the command line.
FINETUNE_OPTIONS = ("lr", "warmup_steps", "lr_schedule")


def read_parent(path: str | Path) -> tuple[CheckpointMeta, dict[str, Any]]:
    """The checkpoint to fine-tune from: its metadata record and the checkpoint itself (for its weights), with
    one message for an exported directory or a foreign file."""
    if is_exported(path):
        raise ValueError(f"--model.init_from {path} is an exported (CTranslate2) model directory: it keeps no "
                         "trainable PyTorch weights; fine-tune from the .ckpt it was exported from")
    checkpoint = read_checkpoint(path)
    meta = CheckpointMeta.from_checkpoint(path, checkpoint)
    if meta.tokenizer_id is None or not meta.hparams.get("model"):
        raise ValueError(f"--model.init_from {path} carries no tokenizer or no model configuration; "
                         "fine-tune from a checkpoint written by `translator fit`")
    return meta, checkpoint


def check_task(path: str | Path, meta: CheckpointMeta, dataset: str) -> None:
    """A chat parent fine-tunes on chat data, a translation parent on translation data."""
    wanted = get_task(get_spec(dataset).task)
    if meta.task != wanted:
        trained = f" trained on {meta.dataset}" if meta.dataset else ""
        raise ValueError(f"--model.init_from {path} is a {meta.task.name} checkpoint{trained}, but --data.dataset "
                         f"{dataset} is {wanted.name} data; fine-tune a {wanted.name} checkpoint on it, or train from "
                         "scratch")


def finetune_defaults(parent_hparams: dict[str, Any], given: Iterable[str]) -> dict[str, Any]:
    """{option: value} of FINETUNE_OPTIONS not given on the command line (`given`: option names)."""
    given = set(given)
    values = {"lr": float(parent_hparams.get("lr") or 5e-4) * FINETUNE_LR_SCALE,
              "warmup_steps": FINETUNE_WARMUP_STEPS, "lr_schedule": FINETUNE_SCHEDULE}
    return {key: value for key, value in values.items() if key not in given}


def lineage(path: str | Path, meta: CheckpointMeta) -> dict[str, Any]:
    """What a fine-tuned checkpoint records about its parent (plain data): where it was, its sha256, what it
    was trained on, and its own parent (None when it was trained from scratch)."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path), "dataset": meta.dataset,
            "src_lang": meta.src_lang, "tgt_lang": meta.tgt_lang, "parent": meta.parent}


# ---- tokenizer coverage -------------------------------------------------------------------------
def coverage(tokenizer: Tokenizer, texts: Iterable[str], side: str) -> dict[str, float]:
    """How `tokenizer` cuts `texts` on one side ("src" / "tgt"): pieces, words, and the shares of
    byte-fallback and <unk> pieces (a share of all pieces), pieces per whitespace-separated word."""
    proc = tokenizer.src if side == "src" else tokenizer.tgt
    texts = [t for t in texts if t.strip()]
    pieces = byte = unk = words = 0
    for ids in proc.encode(texts):
        pieces += len(ids)
        byte += sum(1 for i in ids if proc.is_byte(i))
        unk += sum(1 for i in ids if i == tokenizer.unk_id)
    words = sum(len(t.split()) for t in texts)
    return {"sentences": len(texts), "pieces": pieces, "words": words,
            "byte_share": byte / max(pieces, 1), "unk_share": unk / max(pieces, 1),
            "pieces_per_word": pieces / max(words, 1)}


def coverage_report(new: dict[str, dict[str, float]], original: dict[str, dict[str, float]] | None
                    ) -> tuple[str, list[str]]:
    """(report lines, warnings) from `coverage` of each side of the new data and of the parent's data."""
    lines, warnings = [], []
    for side, stats in new.items():
        row = (f"{side}: {stats['byte_share']:.2%} byte-fallback, {stats['unk_share']:.2%} <unk> pieces, "
               f"{stats['pieces_per_word']:.2f} pieces per word")
        fallback = stats["byte_share"] + stats["unk_share"]
        if fallback > WARN_FALLBACK_SHARE:
            warnings.append(f"{side}: {fallback:.2%} of the new data's pieces are byte-fallback or <unk> "
                            f"(above {WARN_FALLBACK_SHARE:.0%}): the parent's tokenizer does not know its characters")
        before = (original or {}).get(side)
        if before and before["pieces_per_word"] > 0:
            ratio = stats["pieces_per_word"] / before["pieces_per_word"]
            row += f" (parent's data: {before['pieces_per_word']:.2f}, x{ratio:.2f})"
            if ratio > WARN_PIECES_RATIO:
                warnings.append(f"{side}: {ratio:.2f} times the pieces per word of the parent's data (above "
                                f"x{WARN_PIECES_RATIO}): its words are cut into many more pieces")
        lines.append(row)
    return lines, warnings


def refused_message(path: str, refused: list) -> str:
    """The one message for `--model.model.*` values that contradict the parent (`resume.Difference`s)."""
    lines = "\n  ".join(map(str, refused))
    give_back = " ".join(d.give_back for d in refused if d.give_back)
    how = f"give the checkpoint's values:\n  {give_back}\nor " if give_back else ""
    return (f"cannot fine-tune from {path} with a model configuration that differs from the checkpoint's:\n  {lines}\n"
            "A fine-tuning run keeps its parent's model (its weights fit no other shape); a differing value may come "
            f"from the --config file. To fine-tune, {how}use the config of the parent's model family.")


def sides(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    return {"src": [s for s, _ in pairs], "tgt": [t for _, t in pairs]}


def report_coverage(tokenizer: Tokenizer, datamodule: Any, parent_data: dict[str, Any]) -> list[str]:
    """Print how the parent's tokenizer covers the new training data (a sample of COVERAGE_SAMPLE pairs),
    against the parent's own training data when it is found here; returns the warnings."""
    new = {side: coverage(tokenizer, texts, side)
           for side, texts in sides(datamodule.sample_pairs(COVERAGE_SAMPLE)).items()}
    original, missing = None, ""
    try:
        pairs = seeded_sample(iter_pairs(str(parent_data.get("dataset")), "train", parent_data.get("src_lang"),
                                         parent_data.get("tgt_lang"), datamodule.data_dir,
                                         int(parent_data.get("context_turns") or DEFAULT_CONTEXT_TURNS)), COVERAGE_SAMPLE, SPLIT_SEED)
        original = {side: coverage(tokenizer, texts, side) for side, texts in sides(pairs).items()}
    except (OSError, ValueError, KeyError) as err:
        missing = f" (the parent's data {parent_data.get('dataset')!r} is not readable here, so no comparison: {err})"
    lines, warnings = coverage_report(new, original)
    note("the parent's tokenizer on the new training data" + missing + ":\n  " + "\n  ".join(lines))
    for warning in warnings:
        print(f"translator fit: warning: {warning}", file=sys.stderr)
    return warnings
