"""The training loss from the decoder's features: the output layer and the loss a chunk of rows at a time."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_MODELS
from translator.training.loss import label_smoothed_loss, projected_smoothed_cross_entropy
from translator.training.system import Seq2SeqSystem

PAD, EPS = 1, 0.1


def _inputs(bias: bool, n: int = 37, d: int = 12, v: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).requires_grad_(True)
    weight = torch.randn(v, d, generator=g).requires_grad_(True)
    b = torch.randn(v, generator=g).requires_grad_(True) if bias else None
    target = torch.randint(0, v, (n,), generator=g)
    target[::5] = PAD
    return hidden, weight, b, target


def _grads(*tensors):
    grads = [None if t is None else t.grad.clone() for t in tensors]
    for t in tensors:
        if t is not None:
            t.grad = None
    return grads


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk_rows", [8, 1000])  # several chunks, the last one short; one chunk
def test_projected_loss_and_gradients_equal_cross_entropy_of_the_whole_logits(fused: bool, bias: bool,
                                                                             chunk_rows: int):
    hidden, weight, b, target = _inputs(bias)
    loss, nll = projected_smoothed_cross_entropy(hidden, weight, b, target, EPS, PAD, fused=fused,
                                                 chunk_rows=chunk_rows)
    loss.backward()
    ours = _grads(hidden, weight, b)
    logits = F.linear(hidden, weight, b)  # (N, V) whole
    expected = F.cross_entropy(logits, target, ignore_index=PAD, label_smoothing=EPS)
    expected.backward()
    theirs = _grads(hidden, weight, b)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(logits.detach(), target, ignore_index=PAD))
    for mine, reference in zip(ours, theirs):
        if reference is not None:
            torch.testing.assert_close(mine, reference)
    assert not ours[0][target == PAD].any()  # pads get no gradient
    assert not nll.requires_grad


def test_projected_loss_without_gradients_has_the_same_values():
    hidden, weight, b, target = _inputs(bias=True)
    with_grad = projected_smoothed_cross_entropy(hidden, weight, b, target, EPS, PAD, chunk_rows=8)
    with torch.no_grad():
        without = projected_smoothed_cross_entropy(hidden, weight, b, target, EPS, PAD, chunk_rows=8)
    torch.testing.assert_close(without[0], with_grad[0].detach())
    torch.testing.assert_close(without[1], with_grad[1])
    assert not without[0].requires_grad


def test_projected_loss_under_bf16_autocast_follows_the_linear_layer():
    """Under autocast the output layer's products run in bf16 as `F.linear` does; gradients keep the float32
    dtype of the parameters and match the whole-logits path within bf16 rounding."""
    hidden, weight, _, target = _inputs(bias=False, n=64, d=32, v=40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = projected_smoothed_cross_entropy(hidden, weight, None, target, EPS, PAD, chunk_rows=16)
    loss.backward()
    ours = _grads(hidden, weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, _ = label_smoothed_loss(F.linear(hidden, weight), target, EPS, PAD, fused=False)
    expected.backward()
    theirs = _grads(hidden, weight)
    torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-3)
    for mine, reference in zip(ours, theirs):
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, reference, rtol=2e-2, atol=2e-3)


def _batch(vocab: int = 50, pad: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, vocab, (6, 7), generator=g)
    tgt_out = torch.randint(4, vocab, (6, 5), generator=g)
    src[0, 5:] = pad
    tgt_out[1, 3:] = pad
    tgt_in = torch.cat([torch.full((6, 1), 2), tgt_out[:, :-1]], 1).masked_fill(tgt_out == pad, pad)
    return {"src": src, "src_mask": src != pad, "tgt_in": tgt_in, "tgt_out": tgt_out}


@pytest.mark.parametrize("kind", sorted(TINY_MODELS))
def test_training_loss_equals_cross_entropy_of_the_models_logits(kind: str):
    """Every family splits its teacher forcing into features and the output layer `out`: the system's loss
    from the features equals F.cross_entropy of the model's own logits, and so do the weights' gradients."""
    torch.manual_seed(0)
    model = TINY_MODELS[kind](50, 0)
    system = Seq2SeqSystem(model, val_bleu=False, compile_loss=False)
    system.log = lambda *args, **kwargs: None  # no Trainer attached
    system.train()
    batch = _batch()
    loss = system._shared_step(batch, "train")
    loss.backward()
    ours = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])  # (B, T, V)
    expected = F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=0, label_smoothing=0.1)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, msg=lambda m: f"{kind} {name}: {m}")
