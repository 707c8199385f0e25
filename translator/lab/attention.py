"""`translator lab attention`: every layer and head, and the recurrent model's alignments.

Attention is a query searching keys for values: softmax(q·k / sqrt(d)) weighs the values. The
Transformer has it three times per block (encoder self-attention, causal decoder self-attention,
decoder cross-attention to the source), in every layer and head; the attention RNN (Bahdanau's
additive score, Luong's dot/general) has one alignment per output step.

The model's forward pass stays as it is: forward hooks, attached for this one call and removed
after it, record the inputs of each attention module, and the weights are recomputed from those
inputs and the module's own projections (the models never keep weights on themselves). The last
layer's cross-attention averaged over heads is checked against what the decoder state reports.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from translator.artifacts.checkpoint import load_bundle
from translator.lab.common import encode_one, greedy_ids, label, new_figure, pieces, save, step_through
from translator.models.base import Seq2Seq
from translator.models.transformer import CrossAttention, SelfAttention, split_heads
from translator.tokenizer import Tokenizer


def _softmax(q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
    """q (H, T, Dh), k (H, S, Dh), mask (T, S) True = attend or None -> weights (H, T, S)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


@torch.inference_mode()
def transformer_weights(model: Seq2Seq, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> dict[str, list[Tensor]]:
    """Teacher-forced pass over one sentence (src (1, S), tgt_in (1, T)) -> per kind a list over layers
    of weights (H, queries, keys): encoder self (S, S), decoder self (T, T), cross (T, S)."""
    records: list[tuple[str, nn.Module, tuple, dict]] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (SelfAttention, CrossAttention)):
            kind = "cross" if isinstance(module, CrossAttention) else (
                "encoder self" if name.startswith("encoder") else "decoder self")
            handles.append(module.register_forward_hook(
                lambda m, args, kwargs, out, kind=kind: records.append((kind, m, args, kwargs)), with_kwargs=True))
    try:
        model(src, src_mask, tgt_in)
    finally:
        for handle in handles:
            handle.remove()
    out: dict[str, list[Tensor]] = {"encoder self": [], "decoder self": [], "cross": []}
    for kind, module, args, kwargs in records:
        x = args[0].float()  # (1, T, D) the module's input
        if kind == "cross":
            (q,) = split_heads(module.q.float()(x), 1, module.heads)  # (1, H, T, Dh)
            k = args[1].float()  # (1, H, S, Dh) from project_memory
            weights = _softmax(q[0], k[0], src_mask[0][None, :])
        else:
            q, k, _ = split_heads(module.qkv.float()(x), 3, module.heads)
            T = x.size(1)
            mask = torch.ones(T, T, dtype=torch.bool).tril() if kind == "decoder self" else src_mask[0][None, :]
            weights = _softmax(q[0], k[0], mask)
        out[kind].append(weights)  # (H, T, S)
    return out


def compute(model: Seq2Seq, tokenizer: Tokenizer, text: str, target: str | None = None) -> dict[str, Any]:
    """Attention over `text` while producing `target` (default: the model's own greedy translation)."""
    if not model.has_attention:
        raise ValueError(f"{type(model).__name__} has no attention: its decoder sees the source only "
                         "through one context vector (use `translator lab bottleneck` to see what that costs)")
    model = model.float().eval()
    src, src_mask = encode_one(tokenizer, text)
    out_ids = tokenizer.encode_tgt([target])[0] if target else greedy_ids(model, tokenizer, src, src_mask)
    tgt_in = [tokenizer.bos_id, *out_ids]
    # Rows = what each step predicts: the output pieces, then eos.
    data: dict[str, Any] = {"text": text, "target": tokenizer.decode_tgt([out_ids])[0],
                            "src_pieces": pieces(tokenizer, src[0].tolist(), "src"),
                            "tgt_pieces": [*pieces(tokenizer, out_ids), "</s>"],
                            "model": type(model).__name__}
    _, state_attention = step_through(model, src, src_mask, tgt_in, need_attention=True)  # (T, S)
    if isinstance(model, nn.Module) and any(isinstance(m, CrossAttention) for m in model.modules()):
        weights = transformer_weights(model, src, src_mask, torch.tensor([tgt_in]))
        data["layers"] = {kind: [w.tolist() for w in ws] for kind, ws in weights.items()}
        data["heads"] = int(weights["cross"][0].size(0))
        data["max_abs_diff_vs_decoder_state"] = float((weights["cross"][-1].mean(0) - state_attention).abs().max())
        data["entropy_per_head"] = {kind: [[float(-(h * h.clamp_min(1e-12).log()).sum(-1).mean()) for h in w]
                                           for w in ws] for kind, ws in weights.items()}
    else:
        data["alignment"] = state_attention.tolist()  # (T, S)
        data["scorer"] = getattr(getattr(model, "attention", None), "kind", None)
    return data


def _heat(ax: Any, weights: Any, rows: list[str], cols: list[str], title: str, ticks: bool) -> None:
    ax.imshow(weights, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(weights.max()), 1e-6))
    ax.set_title(title, fontsize=8)
    if ticks:
        ax.set_xticks(range(len(cols)), labels=[label(p) for p in cols], rotation=90, fontsize=6)
        ax.set_yticks(range(len(rows)), labels=[label(p) for p in rows], fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def figure(data: dict[str, Any]) -> Any:
    """Transformer: a grid, one row per (kind, layer), one column per head. RNN: the alignment matrix."""
    import numpy as np

    src, tgt = data["src_pieces"], data["tgt_pieces"]
    tgt_in = ["<s>", *tgt[:-1]]
    if "alignment" not in data:
        heads = data["heads"]
        rows = [(kind, i, w) for kind, ws in data["layers"].items() for i, w in enumerate(ws)]
        fig = new_figure(2.6 * heads + 0.6, 2.5 * len(rows) + 0.6, layout=None)
        axes = fig.subplots(len(rows), heads, squeeze=False)
        fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.9 / fig.get_figheight(), bottom=0.03, hspace=0.4,
                            wspace=0.08)
        labels = {"encoder self": (src, src), "decoder self": (tgt, tgt_in), "cross": (tgt, src)}
        for r, (kind, layer, w) in enumerate(rows):
            w = np.array(w)  # (H, queries, keys)
            for h in range(heads):
                ylab, xlab = labels[kind]
                _heat(axes[r, h], w[h], ylab, xlab, f"{kind} · layer {layer + 1} · head {h + 1}", h == 0)
        fig.suptitle(f"“{data['text']}” → “{data['target']}”: rows = queries, columns = keys", fontsize=10,
                     y=1 - 0.2 / fig.get_figheight())
        return fig
    w = np.array(data["alignment"])
    fig = new_figure(min(3 + 0.45 * len(src), 14), min(2 + 0.35 * len(tgt), 12))
    ax = fig.add_subplot()
    _heat(ax, w, tgt, src, f"{data['model']} ({data['scorer']} attention): where each output step looked", True)
    ax.set(xlabel="source pieces", ylabel="output pieces")
    return fig


def command(checkpoint: str, *, text: str, target: str | None = None, output: str = "lab-attention.png") -> Path:
    """Every layer and head of the Transformer's self- and cross-attention, or the RNN's alignments, as a grid.

    Examples:
        translator lab attention TRANSFORMER.ckpt --text "Ein Mann fährt Fahrrad." --output attention.png
        translator lab attention ATTENTION.ckpt --text "Zwei Hunde spielen im Schnee." --output alignment.png

    Args:
        checkpoint: a .ckpt of a model with attention (Transformer or AttentionSeq2Seq).
        text: the source sentence.
        target: the output to attend while producing (default: the model's greedy translation).
        output: the PNG to write (the numbers go beside it as .json).
    """
    started = time.perf_counter()
    bundle = load_bundle(checkpoint)
    data = compute(bundle.model, bundle.tokenizer, text, target)
    data["checkpoint"] = str(checkpoint)
    return save(figure(data), data, output, started)
