"""`translator lab gates`: what the LSTM's (or GRU's) gates do over a sentence.

nn.LSTM does not expose its gates, so they are computed here from its own weights, step by step,
exactly as PyTorch defines them (and checked against nn.LSTM's hidden states):

    LSTM: i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), split in four
          c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)
    GRU:  r, z = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr), σ(...);  n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))
          h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

A forget gate near 1 carries the cell state (and its gradient) across steps unchanged: that is
the LSTM's fix for vanishing gradients. Shown: the encoder's first layer (forward direction),
reading the source in the order the model reads it (reversed for reverse_source models).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from translator.artifacts.checkpoint import load_bundle
from translator.lab.common import encode_one, label, new_figure, pieces, save
from translator.models.base import Seq2Seq
from translator.tokenizer import Tokenizer

GATE_NAMES = {"LSTM": ("input", "forget", "output"), "GRU": ("reset", "update")}


def lstm_gates(rnn: nn.LSTM, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Layer 0, forward direction of `rnn` over x (S, E) -> gates {name: (S, H)} and hidden states (S, H)."""
    w_ih, w_hh, b = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0
    H = rnn.hidden_size
    h, c = x.new_zeros(H), x.new_zeros(H)
    out: dict[str, list[Tensor]] = {"input": [], "forget": [], "output": []}
    hs = []
    for x_t in x:
        i, f, g, o = (w_ih @ x_t + w_hh @ h + b).split(H)  # 4 × (H,)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
        for name, value in zip(("input", "forget", "output"), (i, f, o)):
            out[name].append(value)
        hs.append(h)
    return {k: torch.stack(v) for k, v in out.items()}, torch.stack(hs)


def gru_gates(rnn: nn.GRU, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Layer 0, forward direction of a GRU over x (S, E) -> gates {reset, update: (S, H)}, hidden (S, H)."""
    H = rnn.hidden_size
    h = x.new_zeros(H)
    out: dict[str, list[Tensor]] = {"reset": [], "update": []}
    hs = []
    for x_t in x:
        xr, xz, xn = (rnn.weight_ih_l0 @ x_t + rnn.bias_ih_l0).split(H)
        hr, hz, hn = (rnn.weight_hh_l0 @ h + rnn.bias_hh_l0).split(H)
        r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
        n = (xn + r * hn).tanh()
        h = (1 - z) * n + z * h
        out["reset"].append(r)
        out["update"].append(z)
        hs.append(h)
    return {k: torch.stack(v) for k, v in out.items()}, torch.stack(hs)


@torch.inference_mode()
def compute(model: Seq2Seq, tokenizer: Tokenizer, text: str, units: int = 32) -> dict[str, Any]:
    """Gate activations of the encoder's first layer over `text`: mean per position and the `units`
    units that vary most along the sentence (S positions each)."""
    rnn = getattr(model, "encoder", None)
    kind = type(rnn).__name__
    if kind not in GATE_NAMES:
        what = "a plain tanh RNN has no gates" if kind == "RNN" else f"{type(model).__name__} has no LSTM/GRU encoder"
        raise ValueError(f"gates need an LSTM or GRU model: {what}")
    src, src_mask = encode_one(tokenizer, text)
    ids = src[0].tolist()
    if getattr(model, "reverse_source", False):
        ids = ids[::-1]  # the order this encoder reads the source
    x = model.src_emb(torch.tensor(ids)).float()  # (S, E)
    rnn = rnn.float()
    gates, h = (lstm_gates if kind == "LSTM" else gru_gates)(rnn, x)
    # Check against PyTorch: a one-layer, one-direction copy of layer 0's forward weights.
    single = type(rnn)(rnn.input_size, rnn.hidden_size, 1, batch_first=True)
    single.load_state_dict({k: v for k, v in rnn.state_dict().items() if k.endswith("_l0")})
    check = float((single(x.unsqueeze(0))[0][0] - h).abs().max())
    varying = {name: g.std(0).argsort(descending=True)[:units].tolist() for name, g in gates.items()}
    return {"text": text, "cell": kind, "read_order": "reversed" if getattr(model, "reverse_source", False) else "as written",
            "pieces": pieces(tokenizer, ids, "src"), "hidden_size": rnn.hidden_size,
            "mean": {name: g.mean(1).tolist() for name, g in gates.items()},
            "units": {name: varying[name] for name in gates},
            "heat": {name: g[:, varying[name]].T.tolist() for name, g in gates.items()},  # (units, S)
            "share_above_0.9": {name: float((g > 0.9).float().mean()) for name, g in gates.items()},
            "share_below_0.1": {name: float((g < 0.1).float().mean()) for name, g in gates.items()},
            "max_abs_diff_vs_pytorch": check}


def figure(data: dict[str, Any]) -> Any:
    """One heatmap per gate (the most varying units × positions), and the mean gate per position."""
    import numpy as np

    names = list(data["heat"])
    S = len(data["pieces"])
    fig = new_figure(min(4 + 0.45 * S, 16), 2.6 * len(names) + 2.4)
    axes = fig.subplots(len(names) + 1, 1, sharex=True)
    ticks = [label(p) for p in data["pieces"]]
    for ax, name in zip(axes, names):
        im = ax.imshow(np.array(data["heat"][name]), aspect="auto", cmap="magma", vmin=0, vmax=1)
        ax.set(title=f"{data['cell']} {name} gate: the {len(data['units'][name])} units that vary most "
               f"({data['share_above_0.9'][name]:.0%} of all values > 0.9)", ylabel="unit")
        fig.colorbar(im, ax=ax, shrink=0.9)
    ax = axes[-1]
    for name in names:
        ax.plot(data["mean"][name], marker="o", label=name)
    ax.set(ylim=(0, 1), ylabel="mean over units", title=f"mean gate per source piece (read {data['read_order']})")
    ax.legend(ncol=len(names))
    ax.set_xticks(range(S), labels=ticks, rotation=60, ha="right")
    return fig


def command(checkpoint: str, *, text: str, output: str = "lab-gates.png", units: int = 32) -> Path:
    """LSTM forget/input/output (or GRU reset/update) activations over a sentence, as a heatmap.

    Computed from the encoder's weights (nn.LSTM does not expose its gates), checked against its outputs.

    Examples:
        translator lab gates LSTM.ckpt --text "Ein Mann fährt Fahrrad." --output gates.png

    Args:
        checkpoint: a .ckpt of an LSTM or GRU model (LSTMSeq2Seq or AttentionSeq2Seq).
        text: the source sentence.
        output: the PNG to write (the numbers go beside it as .json).
        units: hidden units shown per gate (those that vary most along the sentence).
    """
    started = time.perf_counter()
    bundle = load_bundle(checkpoint)
    data = compute(bundle.model, bundle.tokenizer, text, units)
    data["checkpoint"] = str(checkpoint)
    return save(figure(data), data, output, started)
