"""`translator lab exposure`: teacher forcing in training, the model's own predictions at test time.

In training the decoder always reads the reference prefix (<sos> y_1 ... y_{t-1}: teacher
forcing); translating, it reads its own earlier outputs, mistakes included (free running). The
gap is exposure bias: a model can look good under teacher forcing (low validation loss, and
its next-token guesses after the *reference* prefix make a good "translation") and still go
astray when it must continue from its own words. Scheduled sampling (Bengio et al. 2015)
narrows the gap by feeding the model some of its own predictions in training: here the trainer's
`teacher_forcing_ratio` / `teacher_forcing_decay_steps` (translator/training/system.py).

Measured on real data: two short runs of one small model with the real trainer, identical but
for the schedule (ratio 1.0, and a linear decay to --final_ratio); every --every steps, on
validation sentences: the teacher-forced loss, the BLEU of the teacher-forced next-token guesses
("teacher forcing's promise"), and the BLEU of greedy free-running decoding.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from translator.decoding import greedy_decode
from translator.evaluation.metrics import score
from translator.lab.common import ShortRun, datamodule, new_figure, save, short_fit
from translator.models.transformer import Transformer
from translator.training.loss import label_smoothed_loss


@torch.inference_mode()
def evaluate(model: Any, dm: Any, sentences: int = 200) -> dict[str, float]:
    """Teacher-forced loss and promise BLEU, and free-running greedy BLEU, on the first val sentences."""
    split, tok = dm._split("val"), dm.tokenizer
    n = min(sentences, len(split))
    refs = [split.tgt_text[i] for i in range(n)]
    src_ids, tgt_ids = [split.src_ids[i] for i in range(n)], [split.tgt_ids[i] for i in range(n)]
    S, T = max(map(len, src_ids)), max(map(len, tgt_ids)) + 1
    src = torch.full((n, S), tok.pad_id)
    tgt_in, tgt_out = torch.full((n, T), tok.pad_id), torch.full((n, T), tok.pad_id)
    for r, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        src[r, :len(s)] = torch.tensor(s)
        tgt_in[r, :len(t) + 1] = torch.tensor([tok.bos_id, *t])
        tgt_out[r, :len(t) + 1] = torch.tensor([*t, tok.eos_id])
    src_mask = src != tok.pad_id
    was_training = model.training
    model.eval()
    logits = model(src, src_mask, tgt_in)  # (n, T, V)
    loss, _ = label_smoothed_loss(logits.flatten(0, 1), tgt_out.flatten(), 0.0, tok.pad_id, fused=False)
    guesses = logits.argmax(-1).tolist()  # (n, T): the next token after each reference prefix
    promise = [g[:g.index(tok.eos_id)] if tok.eos_id in g else g[:len(t)] for g, t in zip(guesses, tgt_ids)]
    real = tgt_out != tok.pad_id
    accuracy = float(((logits.argmax(-1) == tgt_out) & real).sum() / real.sum())
    hyps = greedy_decode(model, src, src_mask, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id,
                         unk_id=tok.unk_id)
    free = tok.decode_tgt([h[0].tokens for h in hyps])
    model.train(was_training)
    return {"val_loss": float(loss), "token_accuracy": accuracy,
            "bleu_teacher_forced": score(tok.decode_tgt(promise), refs)["bleu"],
            "bleu_free_running": score(free, refs)["bleu"]}


class Probe:
    """Lightning callback: `evaluate` every `every` optimizer steps (and after the last)."""

    def __init__(self, dm: Any, every: int, sentences: int) -> None:
        import lightning as L

        probe = self
        self.points: list[dict[str, float]] = []

        class _Callback(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                step = trainer.global_step
                if step % every == 0 or step >= trainer.max_steps:
                    probe.points.append({"step": step, "teacher_forcing": pl_module.teacher_forcing_now(),
                                         **evaluate(pl_module.model, dm, sentences)})

        self.callback = _Callback()


def small_transformer(dm: Any) -> Transformer:
    return Transformer(dm.src_vocab_size, dm.tgt_vocab_size, dm.pad_id, d_model=128, num_heads=4,
                       num_encoder_layers=2, num_decoder_layers=2, ff_size=512, dropout=0.1)


def compute(run: ShortRun | None = None, final_ratio: float = 0.7, every: int = 50, sentences: int = 200
            ) -> dict[str, Any]:
    """Two runs (teacher forcing 1.0; linear decay to final_ratio over all steps), probed every `every` steps."""
    run = run or ShortRun(steps=300, lr=2e-3)
    dm = datamodule(run)
    schedules = {"teacher forcing (ratio 1.0)": (1.0, 0),
                 f"scheduled sampling (1.0 → {final_ratio:g})": (final_ratio, run.steps)}
    data: dict[str, Any] = {"dataset": run.dataset, "steps": run.steps, "lr": run.lr, "val_sentences": sentences,
                            "model": "Transformer d_model 128, 2+2 layers", "runs": {}}
    for name, (ratio, decay) in schedules.items():
        torch.manual_seed(run.seed)
        probe = Probe(dm, every, sentences)
        short_fit(small_transformer(dm), dm, run, [probe.callback], teacher_forcing_ratio=ratio,
                  teacher_forcing_decay_steps=decay)
        data["runs"][name] = {"teacher_forcing_ratio": ratio, "teacher_forcing_decay_steps": decay,
                              "points": probe.points}
    for d in data["runs"].values():
        last = d["points"][-1]
        d["gap_at_end"] = last["bleu_teacher_forced"] - last["bleu_free_running"]
    return data


def figure(data: dict[str, Any]) -> Any:
    """Left: validation loss under teacher forcing. Right: BLEU promised under teacher forcing vs free running."""
    fig = new_figure(13, 4.6)
    a, b = fig.subplots(1, 2)
    colors = ["#4c72b0", "#dd8452"]
    for color, (name, d) in zip(colors, data["runs"].items()):
        steps = [p["step"] for p in d["points"]]
        a.plot(steps, [p["val_loss"] for p in d["points"]], color=color, marker="o", label=name)
        b.plot(steps, [p["bleu_teacher_forced"] for p in d["points"]], color=color, ls="--", marker="o",
               label=f"{name}: teacher-forced guesses")
        b.plot(steps, [p["bleu_free_running"] for p in d["points"]], color=color, marker="s",
               label=f"{name}: free running (greedy)")
    a.set(xlabel="optimizer step", ylabel="validation loss (teacher forced, NLL)",
          title=f"{data['model']}, {data['dataset']}")
    a.legend(fontsize=8)
    b.set(xlabel="optimizer step", ylabel=f"BLEU ({data['val_sentences']} val sentences)",
          title="teacher forcing's promise (dashed) vs free running (solid)")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return fig


def command(*, output: str = "lab-exposure.png", dataset: str = "multi30k", data_dir: str | None = None,
            steps: int = 300, lr: float = 2e-3, final_ratio: float = 0.7, every: int = 50, sentences: int = 200,
            vocab_size: int = 4000, max_tokens: int = 2000, seed: int = 1234, cache_dir: str = "data/cache") -> Path:
    """Teacher forcing vs free running: validation loss and BLEU for ratio 1.0 and a scheduled-sampling schedule.

    Two short runs of a small Transformer with the real trainer (the second with
    --model.teacher_forcing_ratio / --model.teacher_forcing_decay_steps, as `translator fit` takes them).

    Examples:
        translator lab exposure --output exposure.png
        translator lab exposure --final_ratio 0.5 --steps 600 --output exposure.png

    Args:
        output: the PNG to write (the numbers go beside it as .json).
        dataset: registered translation dataset.
        data_dir: folder holding the dataset; None = $TRANSLATOR_DATA_DIR, then data/.
        steps: optimizer steps per run.
        lr: learning rate (AdamW, constant after 20 warmup steps).
        final_ratio: the schedule's teacher-forcing ratio at the last step (linear from 1.0).
        every: probe every this many steps.
        sentences: validation sentences per probe.
        vocab_size: SentencePiece vocabulary of the short runs.
        max_tokens: token budget per training batch.
        cache_dir: where the short runs' tokenizer is cached.
        seed: seed of initialisation, batches and the sampling of inputs.
    """
    started = time.perf_counter()
    run = ShortRun(dataset=dataset, data_dir=data_dir, vocab_size=vocab_size, max_tokens=max_tokens, steps=steps,
                   lr=lr, seed=seed, cache_dir=cache_dir)
    data = compute(run, final_ratio, every, sentences)
    return save(figure(data), data, output, started)
