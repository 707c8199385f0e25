"""Contrastive (MMI) training: each reply also scored after another pair's context, the gap pushed up."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_MODELS
from translator.training.loss import contrastive_loss, label_smoothed_loss, row_log_likelihood
from translator.training.system import Seq2SeqSystem


def _batch(rows: int = 6, vocab: int = 50) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, vocab, (rows, 7), generator=g)
    tgt = torch.randint(4, vocab, (rows, 5), generator=g)
    src[0, 5:] = 0
    tgt[1, 3:] = 0
    tgt_in = torch.cat([torch.full((rows, 1), 2), tgt], 1)
    tgt_out = torch.cat([tgt, torch.zeros(rows, 1, dtype=torch.long)], 1)
    tgt_out[torch.arange(rows), (tgt != 0).sum(1)] = 3  # eos after the last real token
    tgt_in = tgt_in.masked_fill(tgt_out == 0, 0)
    return {"src": src, "src_mask": src != 0, "tgt_in": tgt_in, "tgt_out": tgt_out}


def _system(kind: str, weight: float) -> Seq2SeqSystem:
    torch.manual_seed(0)
    system = Seq2SeqSystem(TINY_MODELS[kind](50, 0), contrastive_weight=weight, val_bleu=False, compile_loss=False)
    system.log = lambda *args, **kwargs: None  # no Trainer attached
    return system


def test_row_log_likelihood_is_minus_the_summed_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(3, 4, 9, generator=g), torch.randint(1, 9, (3, 4), generator=g)
    target[0, 2:] = 0
    nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=0, reduction="none").view(3, 4)
    torch.testing.assert_close(row_log_likelihood(logits, target, 0), -nll.sum(1))


def test_contrastive_loss_is_log2_when_the_context_is_ignored_and_falls_with_the_gap():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(4, 5, 11, generator=g), torch.randint(1, 11, (4, 5), generator=g)
    valid = torch.ones(4, dtype=torch.bool)
    loss, gap = contrastive_loss(logits, logits, target, 0, valid)
    assert gap == 0 and loss.item() == pytest.approx(math.log(2))
    sharper = logits.scatter_add(2, target[..., None], torch.full((4, 5, 1), 2.0))  # true context: more likely
    loss_up, gap_up = contrastive_loss(sharper, logits, target, 0, valid)
    assert gap_up > 0 and loss_up < loss
    # rows whose other context is the same context do not count
    only_first = torch.tensor([True, False, False, False])
    mixed = torch.cat([sharper[:1], logits[1:]])
    loss_one, gap_one = contrastive_loss(mixed, logits, target, 0, only_first)
    assert loss_one == pytest.approx(contrastive_loss(sharper[:1], logits[:1], target[:1], 0, only_first[:1])[0])
    assert gap_one > 0


def test_weight_zero_is_exactly_the_plain_loss_and_the_weight_adds_the_rolled_contrast():
    batch = _batch()
    plain = _system("transformer", 0.0)
    plain.train()
    logits = plain.model(batch["src"], batch["src_mask"], batch["tgt_in"])
    expected, _ = label_smoothed_loss(logits.flatten(0, 1), batch["tgt_out"].flatten(), 0.1, 0, fused=False)
    torch.testing.assert_close(plain._shared_step(batch, "train"), expected)  # the plain loss runs a chunk at a time

    mixed = _system("transformer", 0.5)  # same seed: same weights; dropout 0: same logits
    mixed.train()
    other = mixed.model(batch["src"].roll(1, 0), batch["src_mask"].roll(1, 0), batch["tgt_in"])
    term, _ = contrastive_loss(logits, other, batch["tgt_out"], 0, torch.ones(6, dtype=torch.bool))
    torch.testing.assert_close(mixed._shared_step(batch, "train"), expected + 0.5 * term)
    # validation and test report the plain loss (val/loss stays comparable across runs)
    mixed.eval()
    plain.eval()
    torch.testing.assert_close(mixed._shared_step(batch, "val"), plain._shared_step(batch, "val"))


@pytest.mark.parametrize("kind", sorted(TINY_MODELS))
def test_training_on_the_contrast_raises_the_gap_for_every_family(kind):
    batch = _batch(rows=8)
    system = _system(kind, 1.0)
    optim = torch.optim.Adam(system.model.parameters(), lr=1e-2)
    valid = torch.ones(8, dtype=torch.bool)

    def gap() -> float:
        with torch.no_grad():
            true = system.model(batch["src"], batch["src_mask"], batch["tgt_in"])
            other = system.model(batch["src"].roll(1, 0), batch["src_mask"].roll(1, 0), batch["tgt_in"])
            return contrastive_loss(true, other, batch["tgt_out"], 0, valid)[1].item()

    before = gap()
    for _ in range(15):
        true = system.model(batch["src"], batch["src_mask"], batch["tgt_in"])
        other = system.model(batch["src"].roll(1, 0), batch["src_mask"].roll(1, 0), batch["tgt_in"])
        loss, _ = contrastive_loss(true, other, batch["tgt_out"], 0, valid)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert gap() > before + 0.5, (before, gap())


def test_contrastive_weight_is_checked():
    with pytest.raises(ValueError, match="contrastive_weight must be a finite number >= 0"):
        Seq2SeqSystem(TINY_MODELS["lstm"](30, 0), contrastive_weight=-1.0)
    with pytest.raises(ValueError, match="use one of them"):
        Seq2SeqSystem(TINY_MODELS["lstm"](30, 0), contrastive_weight=1.0, rdrop_alpha=1.0)
