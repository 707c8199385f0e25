"""`translator lab softmax`: the next-token distribution, and what temperature, top-k and top-p do to it.

The decoder ends in a softmax over the whole target vocabulary. Dividing the logits by a
temperature T > 1 flattens it (more diverse samples), T < 1 sharpens it (towards greedy);
top-k keeps the k most likely tokens, top-p the smallest set whose mass reaches p. The cuts
are the decoders' own (`sampling_distribution`), the distribution sampling really draws from.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from translator.artifacts.checkpoint import load_bundle
from translator.decoding import sampling_distribution
from translator.lab.common import encode_one, label, new_figure, pieces, save, step_through
from translator.models.base import Seq2Seq
from translator.tokenizer import Tokenizer


def compute(model: Seq2Seq, tokenizer: Tokenizer, text: str, prefix: str = "", temperature: float = 1.0,
            top_k: int = 10, top_p: float = 0.9, shown: int = 20) -> dict[str, Any]:
    """The distribution after `prefix` (target text already written) for source `text`."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got top_k={top_k}, top_p={top_p}")
    src, src_mask = encode_one(tokenizer, text)
    prefix_ids = tokenizer.encode_tgt([prefix])[0] if prefix.strip() else []
    logits, _ = step_through(model, src, src_mask, [tokenizer.bos_id, *prefix_ids])
    lp = logits[-1:].log_softmax(-1)  # (1, V)
    lp[:, [tokenizer.pad_id, tokenizer.bos_id]] = float("-inf")  # never emitted (the decoders ban them too)
    plain = sampling_distribution(lp, 1.0, 0, 1.0)[0]  # (V,) T = 1, no cut
    tempered = sampling_distribution(lp, temperature, 0, 1.0)[0]
    by_k = sampling_distribution(lp, temperature, top_k, 1.0)[0]
    by_p = sampling_distribution(lp, temperature, 0, top_p)[0]
    both = sampling_distribution(lp, temperature, top_k, top_p)[0]
    order = tempered.argsort(descending=True)[:shown].tolist()
    names = pieces(tokenizer, order)
    rows = [{"piece": names[i], "id": t, "p": float(plain[t]), "p_tempered": float(tempered[t]),
             "p_top_k": float(by_k[t]), "p_top_p": float(by_p[t]), "p_both": float(both[t])} for i, t in enumerate(order)]

    def entropy(p: torch.Tensor) -> float:
        p = p[p > 0]
        return float(-(p * p.log()).sum())

    return {"text": text, "prefix": prefix, "prefix_pieces": pieces(tokenizer, prefix_ids), "temperature": temperature,
            "top_k": top_k, "top_p": top_p, "vocab_size": int(lp.size(1)), "rows": rows,
            "kept": {"top_k": int((by_k > 0).sum()), "top_p": int((by_p > 0).sum()), "both": int((both > 0).sum())},
            "entropy": {"T=1": entropy(plain), f"T={temperature:g}": entropy(tempered)},
            "mass_shown": float(tempered[order].sum())}


def figure(data: dict[str, Any]) -> Any:
    """Top tokens: p at T = 1 and at T, and what survives top-k and top-p (renormalised)."""
    import numpy as np

    rows = data["rows"]
    x = np.arange(len(rows))
    fig = new_figure(12, 6.4)
    a, b = fig.subplots(2, 1, sharex=True)
    a.bar(x - 0.2, [r["p"] for r in rows], 0.4, label="T = 1", color="#bbbbbb")
    a.bar(x + 0.2, [r["p_tempered"] for r in rows], 0.4, label=f"T = {data['temperature']:g}", color="#4c72b0")
    a.set(ylabel="probability", title=f"next token after “{data['prefix'] or '<sos>'}” ({data['vocab_size']:,}-way "
          f"softmax; top {len(rows)} hold {data['mass_shown']:.0%} at T = {data['temperature']:g})")
    a.legend()
    w = 0.28
    b.bar(x - w, [r["p_top_k"] for r in rows], w, label=f"top-k = {data['top_k']} ({data['kept']['top_k']} kept)",
          color="#dd8452")
    b.bar(x, [r["p_top_p"] for r in rows], w, label=f"top-p = {data['top_p']:g} ({data['kept']['top_p']} kept)",
          color="#55a868")
    b.bar(x + w, [r["p_both"] for r in rows], w, label=f"both ({data['kept']['both']} kept)", color="#8172b2")
    b.set(ylabel="renormalised probability", title="what sampling draws from after the cuts (0 = cut)")
    b.set_xticks(x, labels=[label(r["piece"]) for r in rows], rotation=45, ha="right")
    b.legend()
    return fig


def command(checkpoint: str, *, text: str, prefix: str = "", output: str = "lab-softmax.png",
            temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9) -> Path:
    """The next-token distribution (top 20) at a temperature, and how top-k / top-p cut it.

    Examples:
        translator lab softmax CKPT --text "Ein Mann fährt Fahrrad." --prefix "A man" --output softmax.png
        translator lab softmax CKPT --text "Zwei Hunde spielen im Schnee." --temperature 1.5 --top_p 0.8 --output softmax.png

    Args:
        checkpoint: a .ckpt written by `translator fit`.
        text: the source sentence.
        prefix: target text already produced (empty: the first word after <sos>).
        output: the PNG to write (the numbers go beside it as .json).
        temperature: divides the log-probabilities before the softmax.
        top_k: keep the k most likely tokens (0 = all).
        top_p: keep the smallest set whose probability reaches p (1 = all).
    """
    started = time.perf_counter()
    bundle = load_bundle(checkpoint)
    data = compute(bundle.model, bundle.tokenizer, text, prefix, temperature, top_k, top_p)
    data["checkpoint"] = str(checkpoint)
    return save(figure(data), data, output, started)
