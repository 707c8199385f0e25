"""Evaluation reports: one plain dict per evaluated model, its JSON and its table.

A report is a plain dict (see `build_report`), written with `write_json` and shown with
`format_table`. Layout (keys a reader may rely on; absent values are None):

    label                 str, a short name for tables and plots (defaults to the checkpoint file name)
    checkpoint            str | None, path of the evaluated checkpoint
    dataset, split        str | None, registry name and split (e.g. "multi30k", "test_2016_flickr")
    source_path           str | None, --source file when evaluating files instead of a dataset
    reference_path        str | None, --reference file
    n_sentences           int, number of evaluated segments
    bleu, chrf            float, corpus sacreBLEU and chrF2 (0-100)
    signature             {"bleu": str, "chrf": str}, sacreBLEU's own signature strings
    bleu_detail           {"precisions": [4 floats], "bp", "sys_len", "ref_len"}
    tokenize              str, the sacreBLEU tokenizer used for BLEU (see choose_bleu_tokenizer)
    decoding              dict, decoder settings (e.g. {"method": "beam", "beam_size": 5, ...})
    seconds               float | None, wall time of decoding
    sentences_per_second  float | None
    tokens_per_second     float | None, generated target (subword) tokens per second
    bleu_by_length        list of {"bucket", "lo", "hi", "n", "bleu", "chrf"} (see bleu_by_length)
    chat reports only (see chat_metrics; words are `chat_words`, the same rule for both sides):
    distinct_1, distinct_2, entropy_4, mean_length, generic_share, top_reply, top_reply_share,
    reference_<each of those>, distinct_2_ratio, bleu_1, bleu_2 (see sentence_bleu_n), seconds_per_reply,
    and (from `evaluate`) reference_perplexity and the relevance keys of `translator.evaluation.relevance`:
    hits1_loglik, hits1_antilm, hits1_mmi, hits_k, relevance_pairs, relevance_lm_weight,
    relevance_backward_weight

`evaluate` adds: src_lang, tgt_lang, architecture, batch_size, device, chat (bool).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


from translator.atomic import atomic_open
from translator.evaluation.metrics import (DEFAULT_BUCKETS, StreamingScore, bleu_by_length, chat_metrics, score,
                                          sentence_bleu_n)

def build_report(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    source_lengths: Sequence[int] | Sequence[str] | None = None,
    target_lang: str | None = None,
    tokenize: str | None = None,
    lowercase: bool = False,
    label: str | None = None,
    checkpoint: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    source_path: str | None = None,
    reference_path: str | None = None,
    decoding: Mapping[str, Any] | None = None,
    seconds: float | None = None,
    generated_tokens: int | None = None,
    chat: bool = False,
    buckets: Sequence[tuple[int, int | None]] = DEFAULT_BUCKETS,
) -> dict[str, Any]:
    """A report dict in the layout of the module docstring; speeds need `seconds` (and `generated_tokens`)."""
    s = score(hypotheses, references, target_lang=target_lang, tokenize=tokenize, lowercase=lowercase)
    by_length = [] if source_lengths is None else bleu_by_length(
        source_lengths, hypotheses, references, buckets, tokenize=s["tokenize"], lowercase=lowercase)
    report = _report(s, by_length, label=label, checkpoint=checkpoint, dataset=dataset, split=split,
                     source_path=source_path, reference_path=reference_path, decoding=decoding, seconds=seconds,
                     generated_tokens=generated_tokens)
    if chat:
        report.update({k: v for k, v in chat_metrics(hypotheses, references).items() if k != "n"})
        for n in (1, 2):
            report[f"bleu_{n}"] = sentence_bleu_n(hypotheses, references, n, tokenize=s["tokenize"],
                                                  lowercase=lowercase)
        report["seconds_per_reply"] = seconds / s["n"] if seconds is not None and s["n"] else None
    return report


def stream_report(scorer: StreamingScore, **meta: Any) -> dict[str, Any]:
    """The report of `build_report` (translation) from a StreamingScore fed with every segment."""
    return _report(scorer.score(), scorer.by_length(), **meta)


def _report(s: dict[str, Any], by_length: list[dict[str, Any]], *, label: str | None = None,
            checkpoint: str | None = None, dataset: str | None = None, split: str | None = None,
            source_path: str | None = None, reference_path: str | None = None,
            decoding: Mapping[str, Any] | None = None, seconds: float | None = None,
            generated_tokens: int | None = None) -> dict[str, Any]:
    return {
        "label": label or (Path(checkpoint).stem if checkpoint else None),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "dataset": dataset,
        "split": split,
        "source_path": None if source_path is None else str(source_path),
        "reference_path": None if reference_path is None else str(reference_path),
        "n_sentences": s["n"],
        "bleu": s["bleu"],
        "chrf": s["chrf"],
        "signature": s["signature"],
        "bleu_detail": s["bleu_detail"],
        "tokenize": s["tokenize"],
        "decoding": dict(decoding or {}),
        "seconds": seconds,
        "sentences_per_second": s["n"] / seconds if seconds else None,
        "tokens_per_second": generated_tokens / seconds if seconds and generated_tokens is not None else None,
        "bleu_by_length": by_length,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    """A table cell: "-" for missing, fixed digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns separated by two spaces, with a rule under the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# Decoding options the summary table leaves out (they stay in the JSON): limits and seeds rarely differ
# between the rows being compared, and without them the table fits a terminal.
_TABLE_HIDES = ("max_len_a", "max_len_b", "seed", "nbest", "num_samples")


def _decoding_cell(decoding: Mapping[str, Any]) -> str:
    """"method=beam beam_size=5 length_penalty=0.6": shown options, switched-off ones left out."""
    shown = [f"{k}={v}" for k, v in decoding.items()
             if k not in _TABLE_HIDES and not (k in ("no_repeat_ngram_size", "forbid_unk") and not v)]
    return " ".join(shown) or "-"


#: Chat columns of the summary table: the JSON keys themselves (a references row shows reference_<key>).
CHAT_COLUMNS = ("bleu_1", "bleu_2", "distinct_1", "distinct_2", "distinct_2_ratio", "generic_share",
                "top_reply_share", "mean_length", "entropy_4", "reference_perplexity", "hits1_loglik", "hits1_antilm",
                "hits1_mmi", "seconds_per_reply")


def format_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """Terminal tables: one summary row per report, then BLEU by source length for each report.

    Chat reports add the CHAT_COLUMNS (named as in the JSON) and, under each, a row for the
    references: the human ceiling under the same word rule.
    """
    chat = any("distinct_1" in r for r in reports)
    header = ["label", "BLEU", "chrF", "tokenizer", "decoding", "sent/s", "tok/s"]
    header += list(CHAT_COLUMNS) if chat else []
    rows, labels = [], []
    for i, r in enumerate(reports):
        label = r.get("label") or (Path(r["checkpoint"]).stem if r.get("checkpoint") else f"report {i}")
        labels.append(label)
        decoding = _decoding_cell(r.get("decoding") or {})
        row = [label, _fmt(r.get("bleu")), _fmt(r.get("chrf")), _fmt(r.get("tokenize")), decoding,
               _fmt(r.get("sentences_per_second"), 1), _fmt(r.get("tokens_per_second"), 1)]
        if chat:
            row += [_fmt(r.get(k), 3) for k in CHAT_COLUMNS]
        rows.append(row)
        if chat and "reference_distinct_1" in r:
            rows.append([f"  references of {label}", "-", "-", "-", "-", "-", "-"]
                        + [_fmt(r.get(f"reference_{k}"), 3) if f"reference_{k}" in r else "-" for k in CHAT_COLUMNS])
    parts = [_table(header, rows)]
    lineage = [f"{label}: {r['lineage']}" for label, r in zip(labels, reports) if r.get("lineage")]
    if lineage:
        parts.append("\n".join(lineage))
    for label, r in zip(labels, reports):
        summary = r.get("confidence_summary")
        if summary and summary.get("sentences"):
            rho = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
            parts.append(f"{label}: confidence mean {summary['mean']:.3f}, Spearman with sentence chrF "
                         f"{rho(summary['spearman_chrf'])} (mean log-probability alone: "
                         f"{rho(summary['baseline_spearman_chrf'])})")
    for label, r in zip(labels, reports):
        if r.get("bleu_by_length"):
            buckets = [[b["bucket"], str(b["n"]), _fmt(b["bleu"]), _fmt(b["chrf"])] for b in r["bleu_by_length"]]
            parts.append(f"{label}: BLEU by source length\n" + _table(["bucket", "n", "BLEU", "chrF"], buckets))
    return "\n\n".join(parts)


def write_json(data: Mapping[str, Any] | Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write one report or a list of reports as UTF-8 JSON, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"  # serialise first: a bad value leaves no file
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
