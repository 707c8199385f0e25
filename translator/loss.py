"""Label-smoothed cross-entropy and the plain NLL of the same logits, in one pass.

With eps spread over all V classes (as `F.cross_entropy(label_smoothing=eps)` does):

    loss_i = (1 - eps) * (lse_i - x_i[y_i]) + eps * (lse_i - mean_v x_i[v]),   lse_i = logsumexp_v x_i[v]

averaged over the non-pad targets. `symmetric_kl` is R-Drop's consistency term. On CPU it runs compiled (`translator.cpu_fastpaths`, where the
measured gain is written); every device computes this one formula.
"""
from __future__ import annotations

import torch
from torch import Tensor

from translator.cpu_fastpaths import CompiledOnCPU


def smoothed_cross_entropy(logits: Tensor, target: Tensor, eps: float, ignore_index: int) -> tuple[Tensor, Tensor]:
    """logits (N, V), target (N,) -> (label-smoothed loss, plain NLL), both means over target != ignore_index."""
    x = logits.float()  # (N, V)
    lse = x.logsumexp(-1)  # (N,)
    keep = target != ignore_index  # (N,)
    nll = lse - x.gather(1, target.masked_fill(~keep, 0)[:, None]).squeeze(1)  # (N,)
    smooth = lse - x.mean(-1)  # (N,) cross-entropy against the uniform distribution
    count = keep.sum().clamp(min=1)
    loss = torch.where(keep, (1.0 - eps) * nll + eps * smooth, 0.0).sum() / count
    return loss, torch.where(keep, nll, 0.0).sum() / count


fused_smoothed_cross_entropy = CompiledOnCPU(smoothed_cross_entropy)


def label_smoothed_loss(logits: Tensor, target: Tensor, eps: float, ignore_index: int,
                        fused: bool = True) -> tuple[Tensor, Tensor]:
    """`smoothed_cross_entropy`, compiled on CPU when `fused` (eager elsewhere, and if compiling fails)."""
    loss = fused_smoothed_cross_entropy if fused else smoothed_cross_entropy
    return loss(logits, target, eps, ignore_index)


def symmetric_kl(logits_a: Tensor, logits_b: Tensor, keep: Tensor) -> Tensor:
    """R-Drop's term (Liang et al. 2021): (KL(p_a || p_b) + KL(p_b || p_a)) / 2 per position, averaged
    over the positions where `keep` is True; logits (N, V) of two dropout passes over the same input, keep (N,).

    KL(p || q) + KL(q || p) = sum_v (p_v - q_v) (log p_v - log q_v), so one pass computes both.
    """
    lp_a, lp_b = logits_a.float().log_softmax(-1), logits_b.float().log_softmax(-1)  # (N, V)
    both = ((lp_a.exp() - lp_b.exp()) * (lp_a - lp_b)).sum(-1)  # (N,)
    return torch.where(keep, both, 0.0).sum() / (2 * keep.sum().clamp(min=1))
