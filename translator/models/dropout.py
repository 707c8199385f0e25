"""Dropout whose CPU masks come from random bytes: the same layer, a fraction of the RNG cost.

On CPU, `F.dropout` draws one Bernoulli sample per element from the (sequential) Mersenne
Twister at 12-18 ns each; in a bf16 Transformer training step on two cores that was 19% of
the time (`benchmarks/speed.py --profile`). Drawing one random byte per element and keeping
it when it is >= round(256 p) costs about a quarter of that. The price: the drop probability
is rounded to a multiple of 1/256 (0.1 -> 0.1016, 0.3 -> 0.3008), and kept values are scaled
by 1 / (1 - that rounded p), so the layer stays unbiased. Other devices (and p of 0 or 1) use
`F.dropout` unchanged. Seeding `torch.manual_seed` makes the masks reproducible as before.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 256  # one random byte per element


class _ByteMaskDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, threshold: int) -> Tensor:  # type: ignore[override]
        keep = torch.empty(x.shape, dtype=torch.uint8, device=x.device).random_() >= threshold  # (x.shape) bool
        mask = keep.to(x.dtype).mul_(LEVELS / (LEVELS - threshold))  # 0 or 1 / (1 - p)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`F.dropout(x, p, training)`, with byte masks on CPU (p rounded to a multiple of 1/256)."""
    if not training or p == 0.0:
        return x
    threshold = round(p * LEVELS)
    if x.device.type != "cpu" or not 0 < threshold < LEVELS:
        return F.dropout(x, p, training)
    return _ByteMaskDropout.apply(x, threshold)


class Dropout(nn.Dropout):
    """`nn.Dropout` (same argument, same state dict) using `dropout` above."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
