"""`translator lab params`: how many parameters each component takes, with the formula beside it.

The recurrence uses the same weights at every step, so its size depends on the widths, never on
the sentence length: a tanh RNN layer has W_x (H×E), W_h (H×H) and a bias; an LSTM has four
such blocks (input, forget, cell, output), a GRU three (reset, update, new). PyTorch keeps two
bias vectors per block (b_ih and b_hh; their sum is the one bias of the textbook), so its count
is g·(E·H + H·H + 2H). Every formula is checked against the model's real parameter tensors.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from torch import nn

from translator.lab.common import model_from, new_figure, save

#: Weight blocks per recurrent cell: the "g" of g·(E·H + H·H + 2H).
GATES = {"RNN": 1, "RNNCell": 1, "GRU": 3, "GRUCell": 3, "LSTM": 4, "LSTMCell": 4}


def _recurrent(module: nn.Module) -> tuple[str, int]:
    g = GATES[type(module).__name__]
    H, In = module.hidden_size, module.input_size
    if isinstance(module, nn.RNNCellBase):
        return f"{g}·({In}·{H} + {H}·{H} + 2·{H})".removeprefix("1·"), g * (In * H + H * H + 2 * H)
    dirs = 2 if module.bidirectional else 1
    parts, total = [], 0
    for layer in range(module.num_layers):
        width = In if layer == 0 else H * dirs
        total += dirs * g * (width * H + H * H + 2 * H)
        parts.append(f"{dirs}·" * (dirs > 1) + f"{g}·".removeprefix("1·") + f"({width}·{H} + {H}·{H} + 2·{H})")
    return " + ".join(parts), total


def formula(module: nn.Module) -> tuple[str, int] | None:
    """(formula as text with the numbers in, its value) for a leaf module we know, else None."""
    if isinstance(module, nn.Embedding):
        return f"{module.num_embeddings}·{module.embedding_dim} (V·E)", module.num_embeddings * module.embedding_dim
    if isinstance(module, nn.Linear):
        i, o = module.in_features, module.out_features
        if module.bias is None:
            return f"{i}·{o}", i * o
        return f"{i}·{o} + {o}", i * o + o
    if isinstance(module, nn.LayerNorm):
        d = module.normalized_shape[0]
        return f"2·{d}", 2 * d
    if type(module).__name__ in GATES:
        return _recurrent(module)
    return None


def components(model: nn.Module) -> list[dict[str, Any]]:
    """One row per leaf module with parameters: its path, formula, the formula's value and the real count.

    A parameter shared by two modules (tied embeddings) is counted once, at its first module.
    """
    seen: set[int] = set()
    rows = []

    def visit(prefix: str, module: nn.Module) -> None:
        known = formula(module)
        own = list(module.named_parameters(recurse=known is not None))
        if known is not None or not list(module.children()):
            params = [p for _, p in own]
            if not params:
                return
            shared = all(id(p) in seen for p in params)
            actual = sum(p.numel() for p in params if id(p) not in seen)
            seen.update(id(p) for p in params)
            text, value = known if known is not None else ("?", actual)
            rows.append({"component": prefix, "type": type(module).__name__, "formula": text,
                         "formula_value": 0 if shared else value, "actual": actual, "tied": shared})
            return
        for name, child in module.named_children():
            visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", model)
    return rows


def exercise(emb_size: int = 100, hidden_size: int = 128, vocab_size: int = 10000) -> list[dict[str, Any]]:
    """The lectures' RNN exercise, each matrix counted from a real nn.RNN / nn.Linear.

    h_t = tanh(W_x x_t + W_h h_{t-1} + b_h), y_t = W_y h_t + b_y with x_t in R^E, h_t in R^H, y_t in R^V.
    """
    rnn, out = nn.RNN(emb_size, hidden_size), nn.Linear(hidden_size, vocab_size)
    E, H, V = emb_size, hidden_size, vocab_size
    return [
        {"component": "W_x", "formula": f"E·H = {E}·{H}", "formula_value": E * H, "actual": rnn.weight_ih_l0.numel()},
        {"component": "W_h", "formula": f"H·H = {H}·{H}", "formula_value": H * H, "actual": rnn.weight_hh_l0.numel()},
        {"component": "b_h", "formula": f"H = {H} (PyTorch: b_ih + b_hh = 2·{H})", "formula_value": H,
         "actual": rnn.bias_ih_l0.numel()},
        {"component": "W_y", "formula": f"H·V = {H}·{V}", "formula_value": H * V, "actual": out.weight.numel()},
        {"component": "b_y", "formula": f"V = {V}", "formula_value": V, "actual": out.bias.numel()},
        {"component": "nn.RNN in all (same weights at every step)", "formula": f"E·H + H·H + 2·H = {E}·{H} + {H}·{H} + 2·{H}",
         "formula_value": E * H + H * H + 2 * H, "actual": sum(p.numel() for p in rnn.parameters())},
    ]


def grouped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of identical layers merged: encoder_layers.0.attn, .1.attn, ... -> encoder_layers.*.attn (L × formula)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if not row["tied"]:
            groups.setdefault(re.sub(r"\.\d+(?=\.|$)", ".*", row["component"]), []).append(row)
    out = []
    for key, members in groups.items():
        text = members[0]["formula"] if len(members) == 1 else f"{len(members)} × ({members[0]['formula']})"
        if len({m["formula"] for m in members}) > 1:
            text = " + ".join(m["formula"] for m in members)
        out.append({"component": key, "formula": text, "formula_value": sum(m["formula_value"] for m in members),
                    "actual": sum(m["actual"] for m in members)})
    return out


def compute(source: str | Path | None = None, emb_size: int = 100, hidden_size: int = 128,
            vocab_size: int = 10000) -> dict[str, Any]:
    """The exercise and, given a config or checkpoint, every component of that model."""
    data: dict[str, Any] = {"exercise": {"emb_size": emb_size, "hidden_size": hidden_size, "vocab_size": vocab_size,
                                         "rows": exercise(emb_size, hidden_size, vocab_size)}}
    if source is not None:
        model, what = model_from(source)
        rows = components(model)
        data["model"] = {"source": what, "class": type(model).__name__, "rows": rows,
                         "total": sum(r["actual"] for r in rows),
                         "total_pytorch": sum(p.numel() for p in model.parameters())}
    return data


def figure(data: dict[str, Any]) -> Any:
    """Bars per component, the formula written beside each bar."""
    panels = [("exercise", f"RNN exercise: E={data['exercise']['emb_size']}, H={data['exercise']['hidden_size']}, "
               f"V={data['exercise']['vocab_size']}")]
    if "model" in data:
        panels.append(("model", f"{data['model']['class']} ({data['model']['source']}): "
                       f"{data['model']['total']:,} parameters"))
    sizes = [len(grouped(data[key]["rows"]) if key == "model" else data[key]["rows"]) for key, _ in panels]
    heights = [max(2.0, 0.3 * n + 1.0) for n in sizes]
    fig = new_figure(11, sum(heights))
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (key, title) in zip(axes, panels):
        rows = grouped(data[key]["rows"]) if key == "model" else data[key]["rows"]
        names = [r["component"] for r in rows]
        values = [r["actual"] for r in rows]
        ax.barh(range(len(rows)), values, color="#4c72b0")
        ax.set_yticks(range(len(rows)), labels=names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(1, max(values) * 5000)
        for i, r in enumerate(rows):
            ok = "" if r["formula_value"] == r["actual"] else "  (≠ formula)"
            ax.text(r["actual"] * 1.15, i, f"{r['actual']:,} = {r['formula']}{ok}", va="center", fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("parameters (log scale)")
    return fig


def command(source: str | None = None, *, output: str = "lab-params.png", emb_size: int = 100,
            hidden_size: int = 128, vocab_size: int = 10000) -> Path:
    """Parameters per component with the formula beside each (and the lectures' RNN exercise).

    The exercise: embedding E=100, hidden H=128 -> W_x 12,800, W_h 16,384, b_h 128, W_y H·V.

    Examples:
        translator lab params --output params.png
        translator lab params --source translator/configs/lstm.yaml --output lstm-params.png
        translator lab params --source checkpoints/.../best.ckpt --output params.png

    Args:
        source: a training config (.yaml; vocabulary 8000) or a checkpoint (.ckpt); omitted: the exercise only.
        output: the PNG to write (the numbers go beside it as .json).
        emb_size: the exercise's embedding width E.
        hidden_size: the exercise's hidden width H.
        vocab_size: the exercise's output vocabulary V (the size of W_y).
    """
    started = time.perf_counter()
    data = compute(source, emb_size, hidden_size, vocab_size)
    return save(figure(data), data, output, started)
