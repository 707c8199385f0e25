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


def row_log_likelihood(logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    """logits (B, T, V), target (B, T) -> (B,) sum over non-pad positions of log p(target_t)."""
    x = logits.float()  # (B, T, V)
    keep = target != ignore_index  # (B, T)
    picked = x.gather(2, target.masked_fill(~keep, 0)[..., None]).squeeze(2)  # (B, T)
    return torch.where(keep, picked - x.logsumexp(-1), 0.0).sum(1)


def contrastive_loss(logits_true: Tensor, logits_other: Tensor, target: Tensor, ignore_index: int,
                     valid: Tensor) -> tuple[Tensor, Tensor]:
    """Which reply belongs to which context (a pairwise form of MMI training): logits (B, T, V) of the same
    replies `target` (B, T) after their own context and after another one; valid (B,) marks the rows whose
    other context really differs. Returns (mean_rows softplus(-gap), mean gap), both over valid rows, where

        gap_b = (log p(r_b | c_b) - log p(r_b | c'_b)) / |r_b|        (nats per token)

    The loss is log 2 when the context is ignored (gap 0) and falls towards 0 as the true context makes its
    reply more likely than another context does: the gradient raises p(r|c) and lowers p(r|c'), the
    pointwise mutual information between context and reply that anti-LM / MMI re-ranking scores.
    """
    length = (target != ignore_index).sum(1).clamp(min=1)  # (B,)
    gap = (row_log_likelihood(logits_true, target, ignore_index)
           - row_log_likelihood(logits_other, target, ignore_index)) / length  # (B,)
    count = valid.sum().clamp(min=1)
    loss = torch.where(valid, torch.nn.functional.softplus(-gap), 0.0).sum() / count
    return loss, torch.where(valid, gap, 0.0).sum().detach() / count
