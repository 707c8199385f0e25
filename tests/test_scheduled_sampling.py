"""Scheduled sampling in the trainer: ratio 1.0 is plain teacher forcing exactly; below 1 the decoder
reads some of its own predictions (every family, through the same two-pass mix); the schedule decays."""
from __future__ import annotations

import pytest
import torch

from helpers import TINY_MODELS
from translator.training.loss import label_smoothed_loss
from translator.training.system import Seq2SeqSystem

V, PAD, BOS, EOS = 20, 0, 2, 3


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (4, 6), generator=g)
    src[2, 4:] = PAD
    y = torch.randint(4, V, (4, 5), generator=g)
    tgt_in = torch.cat([torch.full((4, 1), BOS), y], 1)
    tgt_out = torch.cat([y, torch.full((4, 1), EOS)], 1)
    tgt_in[1, 4:], tgt_out[1, 3:] = PAD, PAD
    tgt_out[1, 3] = EOS
    return {"src": src, "src_mask": src != PAD, "tgt_in": tgt_in, "tgt_out": tgt_out}


def loss_and_grads(system: Seq2SeqSystem, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    system.log = lambda *args, **kwargs: None  # no trainer attached
    system.model.zero_grad()
    loss = system._shared_step(b, "train")
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in system.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("kind", ["transformer", "attention", "lstm"])
def test_ratio_one_is_plain_teacher_forcing_exactly(kind):
    torch.manual_seed(0)
    model = TINY_MODELS[kind](V, PAD).eval()  # eval: no dropout, so two passes see the same network
    b = batch()
    plain_logits = model(b["src"], b["src_mask"], b["tgt_in"])
    plain, _ = label_smoothed_loss(plain_logits.flatten(0, 1), b["tgt_out"].flatten(), 0.1, PAD, fused=False)
    plain.backward()
    plain_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    system = Seq2SeqSystem(model, label_smoothing=0.1, compile_loss=False, teacher_forcing_ratio=1.0)
    rng = torch.get_rng_state()
    loss, grads = loss_and_grads(system, b)
    torch.testing.assert_close(loss, plain.detach())  # the trainer's loss runs a chunk at a time: float rounding
    assert len(grads) == len(plain_grads)
    for a, c in zip(grads, plain_grads):
        torch.testing.assert_close(a, c)
    assert torch.equal(torch.get_rng_state(), rng)  # ratio 1.0 draws nothing: runs stay reproducible


@pytest.mark.parametrize("kind", ["transformer", "attention", "lstm"])
def test_ratio_zero_feeds_the_models_own_predictions(kind):
    torch.manual_seed(0)
    model = TINY_MODELS[kind](V, PAD).eval()
    system = Seq2SeqSystem(model, compile_loss=False, teacher_forcing_ratio=0.0)
    b = batch()
    mixed = system.scheduled_inputs(b, 0.0)
    guesses = model(b["src"], b["src_mask"], b["tgt_in"]).argmax(-1)  # (B, T)
    real = b["tgt_in"][:, 1:] != PAD
    assert torch.equal(mixed[:, 0], b["tgt_in"][:, 0])  # bos stays
    assert torch.equal(mixed[:, 1:][~real], b["tgt_in"][:, 1:][~real])  # padding stays
    assert torch.equal(mixed[:, 1:][real], guesses[:, :-1][real])  # position t reads the guess made at t-1
    loss0, _ = loss_and_grads(system, b)
    loss1, _ = loss_and_grads(Seq2SeqSystem(model, compile_loss=False), b)
    assert not torch.equal(loss0, loss1)


def test_ratio_mixes_the_expected_share():
    torch.manual_seed(0)
    model = TINY_MODELS["transformer"](V, PAD).eval()
    system = Seq2SeqSystem(model, compile_loss=False, teacher_forcing_ratio=0.5)
    b = batch()
    b = {k: v.repeat(50, 1) for k, v in b.items()}
    guesses = model(b["src"], b["src_mask"], b["tgt_in"]).argmax(-1)[:, :-1]
    mixed = system.scheduled_inputs(b, 0.5)[:, 1:]
    ref = b["tgt_in"][:, 1:]
    differ = (ref != PAD) & (ref != guesses)
    share_kept = float((mixed[differ] == ref[differ]).float().mean())
    assert 0.4 < share_kept < 0.6


def test_schedule_decays_linearly_then_stays():
    model = TINY_MODELS["lstm"](V, PAD)
    system = Seq2SeqSystem(model, teacher_forcing_ratio=0.6, teacher_forcing_decay_steps=100)

    class Trainer:
        global_step = 0

    system._trainer = Trainer()
    ratios = []
    for step in (0, 50, 100, 400):
        Trainer.global_step = step
        ratios.append(system.teacher_forcing_now())
    assert ratios == pytest.approx([1.0, 0.8, 0.6, 0.6])
    with pytest.raises(ValueError, match="teacher_forcing_ratio"):
        Seq2SeqSystem(model, teacher_forcing_ratio=1.5)
