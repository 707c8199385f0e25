"""`translator lab gradients`: vanishing gradients over distance, and what gradient clipping does.

Backpropagation through time multiplies one Jacobian per step: for a tanh RNN,
dh_t/dh_{t-1} = diag(1 - h_t²) W_h, so the gradient reaching a source word k steps before the
end shrinks roughly geometrically with k (a sigmoid's derivative is at most 0.25, tanh's at
most 1, and both are far below that once saturated), or grows when W_h is large: exploding
gradients, which clipping caps. The LSTM's cell state and the GRU's update gate give the
gradient a path that is multiplied by a gate near 1 instead.

What is measured, on real data: three context-vector models (LSTMSeq2Seq, one layer; the same
sizes, data, seed and steps) trained briefly with the real trainer, then ||dL/dh_t|| of the
encoder state at every source position t of long validation sentences (the only way the
loss reaches h_t is back through the recurrence, since the decoder sees the final state alone);
and the global gradient norm at every training step of the rnn with clipping at 1.0 (before
and after the clip) and without clipping.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from translator.lab.common import ShortRun, datamodule, new_figure, save, short_fit
from translator.models.lstm import LSTMSeq2Seq
from translator.training.loss import label_smoothed_loss

CELLS = ("rnn", "lstm", "gru")


def grad_norm(parameters: Any) -> float:
    """Global L2 norm of the gradients (what clipping by norm compares to its threshold)."""
    grads = [p.grad.detach().float() for p in parameters if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0


class NormRecorder:
    """Lightning callback: gradient norm before the clip, after it (what the optimizer used), and the loss."""

    def __init__(self) -> None:
        import lightning as L

        recorder = self

        class _Callback(L.Callback):
            def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # before Lightning clips
                recorder.before.append(grad_norm(pl_module.parameters()))

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # grads as stepped with
                recorder.after.append(grad_norm(pl_module.parameters()))
                recorder.loss.append(float(outputs["loss"]))

        self.callback = _Callback()
        self.before: list[float] = []
        self.after: list[float] = []
        self.loss: list[float] = []


def long_batch(dm: Any, length: int, limit: int = 64) -> dict[str, Tensor] | None:
    """Validation pairs whose source has at least `length` tokens, cut to exactly `length` (B, length)."""
    split = dm._split("val")
    tok = dm.tokenizer
    rows = [i for i in range(len(split)) if len(split.src_ids[i]) >= length][:limit]
    if not rows:
        return None
    src = torch.tensor([split.src_ids[i][:length] for i in rows])
    tgts = [split.tgt_ids[i] for i in rows]
    width = max(len(t) for t in tgts) + 1
    tgt_in = torch.full((len(rows), width), tok.pad_id)
    tgt_out = torch.full((len(rows), width), tok.pad_id)
    for r, t in enumerate(tgts):
        tgt_in[r, :len(t) + 1] = torch.tensor([tok.bos_id, *t])
        tgt_out[r, :len(t) + 1] = torch.tensor([*t, tok.eos_id])
    return {"src": src, "src_mask": torch.ones_like(src, dtype=torch.bool), "tgt_in": tgt_in, "tgt_out": tgt_out}


def state_gradients(model: LSTMSeq2Seq, batch: dict[str, Tensor]) -> list[float]:
    """Mean over sentences of ||dL/dh_t|| for every source position t in reading order (B, S equal lengths).

    The encoder runs one step at a time (the same nn.RNN/LSTM/GRU module, so the same function) and
    every state h_t keeps its gradient; the decoder is the model's own.
    """
    was_training = model.training
    model.eval()  # no dropout in the measurement (the models here have none: the same in either mode)
    src = batch["src"].flip(1) if model.reverse_source else batch["src"]  # equal lengths: reversing = flipping
    x = model.src_emb(src)  # (B, S, E)
    hx, states = None, []
    for t in range(x.size(1)):
        _, hx = model.encoder(x[:, t:t + 1], hx)  # h (L, B, H) (LSTM: (h, c))
        h = hx[0] if isinstance(hx, tuple) else hx
        h.retain_grad()
        states.append(h)
    h_final = hx[0] if isinstance(hx, tuple) else hx
    c_final = hx[1].transpose(0, 1) if isinstance(hx, tuple) else None
    h_final = h_final.transpose(0, 1)  # (B, L, H)
    features, _, _ = model._decode(batch["tgt_in"], h_final[:, -1], h_final, c_final)  # (B, T, E)
    logits = model.out(features)  # (B, T, V)
    loss, _ = label_smoothed_loss(logits.flatten(0, 1), batch["tgt_out"].flatten(), 0.0, model.pad_id, fused=False)
    model.zero_grad()
    loss.backward()
    norms = [float(h.grad[-1].norm(dim=-1).mean()) for h in states]  # top layer, mean over sentences
    model.zero_grad()
    model.train(was_training)
    return norms


def compute(run: ShortRun | None = None, length: int = 24, hidden_size: int = 128, emb_size: int = 64) -> dict[str, Any]:
    """Train rnn / lstm / gru briefly, measure the gradient over source positions; clip vs no clip for rnn."""
    run = run or ShortRun()
    dm = datamodule(run)
    batch = long_batch(dm, length)
    if batch is None:
        raise ValueError(f"no validation sentence of {run.dataset} has {length} source tokens; lower --length")
    data: dict[str, Any] = {"dataset": run.dataset, "steps": run.steps, "lr": run.lr, "length": length,
                            "sentences": int(batch["src"].size(0)), "hidden_size": hidden_size, "emb_size": emb_size,
                            "cells": {}}
    for cell in CELLS:
        torch.manual_seed(run.seed)
        model = LSTMSeq2Seq(dm.src_vocab_size, dm.tgt_vocab_size, dm.pad_id, cell=cell, emb_size=emb_size,
                            hidden_size=hidden_size, num_layers=1, dropout=0.0, reverse_source=True)
        at_init = state_gradients(model, batch)
        recorder = NormRecorder()
        short_fit(model, dm, run, [recorder.callback], clip=1.0)
        trained = state_gradients(model, batch)
        # Distance k = steps from the last source token read back to position t (reading order).
        data["cells"][cell] = {"at_init": at_init[::-1], "trained": trained[::-1],
                               "final_loss": sum(recorder.loss[-10:]) / max(1, len(recorder.loss[-10:]))}
        if cell == "rnn":
            data["clip"] = {"threshold": 1.0, "before": recorder.before, "after": recorder.after, "loss": recorder.loss}
    torch.manual_seed(run.seed)
    model = LSTMSeq2Seq(dm.src_vocab_size, dm.tgt_vocab_size, dm.pad_id, cell="rnn", emb_size=emb_size,
                        hidden_size=hidden_size, num_layers=1, dropout=0.0, reverse_source=True)
    recorder = NormRecorder()
    short_fit(model, dm, run, [recorder.callback], clip=None)
    data["no_clip"] = {"norm": recorder.before, "loss": recorder.loss}
    for cell, d in data["cells"].items():  # how fast the gradient falls: ratio far end / near end
        d["ratio_far_to_near"] = d["trained"][-1] / max(d["trained"][0], 1e-30)
    data["clip"]["max_after"] = max(data["clip"]["after"])
    data["clip"]["share_clipped"] = sum(b > 1.0 for b in data["clip"]["before"]) / max(1, len(data["clip"]["before"]))
    return data


def figure(data: dict[str, Any]) -> Any:
    """Left: ||dL/dh_t|| / ||dL/dh_last|| over distance, per cell. Middle: gradient norm per step. Right: loss."""
    fig = new_figure(16, 4.6)
    a, b, c = fig.subplots(1, 3)
    colors = {"rnn": "#c44e52", "lstm": "#4c72b0", "gru": "#55a868"}
    for cell, d in data["cells"].items():
        near = d["trained"][0]
        a.plot([g / near for g in d["trained"]], color=colors[cell], marker=".",
               label=f"{cell} after {data['steps']} steps (far/near {d['ratio_far_to_near']:.1e})")
        a.plot([g / d["at_init"][0] for g in d["at_init"]], color=colors[cell], ls=":", lw=1, label=f"{cell} at init")
    a.set(yscale="log", xlabel="distance k: source tokens between h_t and the last one read",
          ylabel="‖∂L/∂h_t‖ / ‖∂L/∂h_last‖",
          title=f"gradient reaching the encoder state ({data['sentences']} val sentences, {data['length']} tokens)")
    a.legend(fontsize=7)
    a.grid(alpha=0.3, which="both")
    clip = data["clip"]
    b.plot(clip["before"], color="#c44e52", lw=1, label="rnn, clip 1.0: norm before the clip")
    b.plot(clip["after"], color="#8172b2", lw=1.5, label="rnn, clip 1.0: norm the optimizer used")
    b.plot(data["no_clip"]["norm"], color="black", lw=0.8, ls=":", label="rnn, no clipping")  # on top: often the same
    b.axhline(clip["threshold"], color="black", ls="--", lw=0.8)
    b.set(yscale="log", xlabel="optimizer step", ylabel="global gradient norm",
          title=f"clipping caps the norm ({clip['share_clipped']:.0%} of steps clipped)")
    b.legend(fontsize=7)
    c.plot(clip["loss"], color="#c44e52", lw=1, label="rnn, clip 1.0")
    c.plot(data["no_clip"]["loss"], color="black", lw=0.8, ls=":", label="rnn, no clipping")
    c.set(xlabel="optimizer step", ylabel="training loss (NLL)", title="training loss")
    c.legend(fontsize=7)
    return fig


def command(*, output: str = "lab-gradients.png", dataset: str = "multi30k", data_dir: str | None = None,
            steps: int = 150, lr: float = 2e-3, length: int = 24, hidden_size: int = 128, vocab_size: int = 4000,
            max_tokens: int = 2000, seed: int = 1234, cache_dir: str = "data/cache") -> Path:
    """||dL/dh_t|| of the encoder state over source positions for rnn / lstm / gru, and clipping.

    Trains three small context-vector models for --steps steps each with the real trainer (same data,
    seed and clipping at 1.0), plus the rnn once more without clipping (about a minute here).

    Examples:
        translator lab gradients --output gradients.png
        translator lab gradients --steps 300 --lr 0.005 --output gradients.png

    Args:
        output: the PNG to write (the numbers go beside it as .json).
        dataset: registered dataset to train on (translation).
        data_dir: folder holding the dataset; None = $TRANSLATOR_DATA_DIR, then data/.
        steps: optimizer steps per model.
        lr: learning rate (AdamW, constant after 20 warmup steps).
        length: source tokens of the measured validation sentences (longer ones are cut to it).
        hidden_size: H of every model.
        vocab_size: SentencePiece vocabulary of the short runs.
        max_tokens: token budget per training batch.
        cache_dir: where the short runs' tokenizer is cached.
        seed: seed of initialisation and batches.
    """
    started = time.perf_counter()
    run = ShortRun(dataset=dataset, data_dir=data_dir, vocab_size=vocab_size, max_tokens=max_tokens, steps=steps,
                   lr=lr, seed=seed, cache_dir=cache_dir)
    data = compute(run, length, hidden_size)
    return save(figure(data), data, output, started)
