"""`translator lab beam`: beam search made visible — the K hypotheses kept at every step, with scores.

Greedy keeps one hypothesis; beam search keeps the K best partial outputs by summed
log-probability, expands each by every next token, and keeps the K best of those K·V. A
hypothesis that picks eos moves to the finished list; the winner is the finished one with the
best length-normalised score. The steps come from the real beam search (`decode(trace=...)`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from translator.artifacts.checkpoint import load_bundle
from translator.decoding import DecodeConfig, decode
from translator.lab.common import encode_one, new_figure, save
from translator.models.base import Seq2Seq
from translator.tokenizer import Tokenizer


def compute(model: Seq2Seq, tokenizer: Tokenizer, text: str, beam_size: int = 4,
            length_penalty: float = 1.0) -> dict[str, Any]:
    """Every step of beam search over `text`: rows (step, rank, hypothesis, score, parent, ended)."""
    if not 1 <= beam_size <= 16:
        raise ValueError(f"beam_size must be in 1..16, got {beam_size}")
    src, src_mask = encode_one(tokenizer, text)
    trace: list[dict[str, Any]] = []
    config = DecodeConfig(method="beam", beam_size=beam_size, length_penalty=length_penalty, nbest=beam_size)
    with torch.inference_mode():
        hyps = decode(model, src, src_mask, config, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                      pad_id=tokenizer.pad_id, unk_id=tokenizer.unk_id, byte_values=tokenizer.tgt_byte_values(),
                      trace=trace)
    text_of = lambda ids: tokenizer.decode_tgt([ids])[0]  # noqa: E731
    rows = []
    for step in trace:
        for rank, (tokens, score, parent) in enumerate(zip(step["beams"][0], step["scores"][0], step["parents"][0])):
            if score == float("-inf"):
                continue
            rows.append({"step": step["step"] + 1, "rank": rank + 1, "hypothesis": text_of(tokens),
                         "last_piece": tokenizer.tgt.id_to_piece(tokens[-1]), "score": round(score, 3),
                         "parent": parent + 1, "ended": False})
        for ended in step["finished"]:
            rows.append({"step": step["step"] + 1, "rank": None, "hypothesis": text_of(ended["tokens"]) + " </s>",
                         "last_piece": "</s>", "score": round(ended["score"], 3), "parent": None, "ended": True})
    final = [{"hypothesis": text_of(h.tokens), "score": round(h.score, 3), "normalized": round(h.normalized, 3),
              "finished": h.finished} for h in hyps[0]]
    return {"text": text, "beam_size": beam_size, "length_penalty": length_penalty, "steps": len(trace),
            "rows": rows, "final": final}


def figure(data: dict[str, Any]) -> Any:
    """The search as a tree: x = step, y = score; lines join each hypothesis to its parent."""
    fig = new_figure(13, 6)
    ax = fig.add_subplot()
    by_step: dict[int, list[dict[str, Any]]] = {}
    for row in data["rows"]:
        if not row["ended"]:
            by_step.setdefault(row["step"], []).append(row)
    for step, rows in by_step.items():
        for row in rows:
            if step > 1 and row["parent"] <= len(by_step.get(step - 1, [])):
                parent = by_step[step - 1][row["parent"] - 1]
                ax.plot([step - 1, step], [parent["score"], row["score"]], color="#999999", lw=0.8, zorder=1)
            ax.scatter(step, row["score"], color="#4c72b0" if row["rank"] == 1 else "#8da0cb", s=14, zorder=2)
            ax.annotate(row["last_piece"].replace("▁", " ").strip() or "▁", (step, row["score"]), fontsize=7,
                        xytext=(2, 2), textcoords="offset points")
    for row in data["rows"]:
        if row["ended"]:
            ax.scatter(row["step"], row["score"], marker="x", color="#c44e52", s=30, zorder=3)
    best = data["final"][0] if data["final"] else None
    ax.set(xlabel="step", ylabel="summed log-probability",
           title=f"beam search, K = {data['beam_size']}: the K live hypotheses per step (x = ended with </s>); "
                 f"best: “{best['hypothesis'] if best else ''}”")
    ax.grid(alpha=0.3)
    return fig


def command(checkpoint: str, *, text: str, output: str = "lab-beam.png", beam_size: int = 4,
            length_penalty: float = 1.0) -> Path:
    """Beam search made visible: the K hypotheses of every step with their scores, as a tree and a table.

    Examples:
        translator lab beam CKPT --text "Ein Mann fährt Fahrrad." --beam_size 4 --output beam.png

    Args:
        checkpoint: a .ckpt written by `translator fit`.
        text: the source sentence.
        output: the PNG to write (the table goes beside it as .json).
        beam_size: K, the hypotheses kept per step.
        length_penalty: GNMT length penalty used to rank finished hypotheses.
    """
    started = time.perf_counter()
    bundle = load_bundle(checkpoint)
    data = compute(bundle.model, bundle.tokenizer, text, beam_size, length_penalty)
    data["checkpoint"] = str(checkpoint)
    return save(figure(data), data, output, started)
