"""Label-smoothed cross-entropy and the plain NLL of the same logits, in one pass.

With eps spread over all V classes (as `F.cross_entropy(label_smoothing=eps)` does):

    loss_i = (1 - eps) * (lse_i - x_i[y_i]) + eps * (lse_i - mean_v x_i[v]),   lse_i = logsumexp_v x_i[v]

averaged over the non-pad targets. `symmetric_kl` is R-Drop's consistency term. On CPU it runs compiled (`translator.cpu_fastpaths`, where the
measured gain is written); every device computes this one formula.

Training computes it from the decoder's features instead of its logits (`projected_smoothed_cross_entropy`):
the output layer and the loss run over CHUNK_ROWS rows at a time, each chunk's gradient is taken at once,
and the (N, V) logits and their gradient never exist whole (memory measured below).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from translator.cpu_fastpaths import CompiledOnCPU


def smoothed_cross_entropy_sums(logits: Tensor, target: Tensor, eps: float, ignore_index: int) -> tuple[Tensor, Tensor]:
    """logits (N, V), target (N,) -> (label-smoothed loss, plain NLL), both summed over target != ignore_index."""
    x = logits.float()  # (N, V)
    lse = x.logsumexp(-1)  # (N,)
    keep = target != ignore_index  # (N,)
    nll = lse - x.gather(1, target.masked_fill(~keep, 0)[:, None]).squeeze(1)  # (N,)
    smooth = lse - x.mean(-1)  # (N,) cross-entropy against the uniform distribution
    return torch.where(keep, (1.0 - eps) * nll + eps * smooth, 0.0).sum(), torch.where(keep, nll, 0.0).sum()


def smoothed_cross_entropy(logits: Tensor, target: Tensor, eps: float, ignore_index: int) -> tuple[Tensor, Tensor]:
    """logits (N, V), target (N,) -> (label-smoothed loss, plain NLL), both means over target != ignore_index."""
    count = (target != ignore_index).sum().clamp(min=1)
    loss, nll = smoothed_cross_entropy_sums(logits, target, eps, ignore_index)
    return loss / count, nll / count


def smoothed_cross_entropy_grad(logits: Tensor, target: Tensor, eps: float, ignore_index: int, scale: Tensor
                                ) -> tuple[Tensor, Tensor, Tensor]:
    """`smoothed_cross_entropy_sums` and scale * its loss's gradient with respect to logits (N, V), float32:

        d loss_i / d x_i[v] = softmax(x_i)[v] - (1 - eps) * [v == y_i] - eps / V   (0 on ignored rows)
    """
    x = logits.float()  # (N, V)
    lse = x.logsumexp(-1, keepdim=True)  # (N, 1)
    keep = target != ignore_index  # (N,)
    safe = target.masked_fill(~keep, 0)[:, None]  # (N, 1)
    nll = (lse - x.gather(1, safe)).squeeze(1)  # (N,)
    smooth = lse.squeeze(1) - x.mean(-1)  # (N,)
    picked = torch.arange(x.size(1), device=x.device)[None, :] == safe  # (N, V) one-hot of the target
    grad = (x - lse).exp() - eps / x.size(1) - (1.0 - eps) * picked.float()  # (N, V)
    grad = torch.where(keep[:, None], grad * scale, 0.0)  # (N, V)
    return torch.where(keep, (1.0 - eps) * nll + eps * smooth, 0.0).sum(), torch.where(keep, nll, 0.0).sum(), grad


fused_smoothed_cross_entropy = CompiledOnCPU(smoothed_cross_entropy)
fused_smoothed_cross_entropy_sums = CompiledOnCPU(smoothed_cross_entropy_sums)
fused_smoothed_cross_entropy_grad = CompiledOnCPU(smoothed_cross_entropy_grad)


def label_smoothed_loss(logits: Tensor, target: Tensor, eps: float, ignore_index: int,
                        fused: bool = True) -> tuple[Tensor, Tensor]:
    """`smoothed_cross_entropy`, compiled on CPU when `fused` (eager elsewhere, and if compiling fails)."""
    loss = fused_smoothed_cross_entropy if fused else smoothed_cross_entropy
    return loss(logits, target, eps, ignore_index)


# ---- the output layer and the loss, a chunk of rows at a time -----------------------------------------
#: Rows of logits alive at once in `projected_smoothed_cross_entropy`: 1024 x V = 8000 float32 is 33 MB
#: (and as much for its gradient), instead of 131 + 131 MB for a 4096-token batch.
CHUNK_ROWS = 1024


class _ProjectedLoss(torch.autograd.Function):
    """The loss of logits = hidden @ weight.T + bias, chunk by chunk; the gradients are taken in the forward
    pass (each chunk's logits are freed before the next), kept (N x D + V x D numbers), and scaled in backward."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,  # type: ignore[override]
                eps: float, ignore_index: int, fused: bool, chunk_rows: int, need_grad: bool) -> tuple[Tensor, Tensor]:
        device = hidden.device.type
        # Under autocast the matrix products run in its dtype, as `F.linear` would; the loss in float32.
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        count = (target != ignore_index).sum().clamp(min=1)
        scale = 1.0 / count  # () float32
        loss_sum = nll_sum = hidden.new_zeros((), dtype=torch.float32)
        grads = [None, None, None]
        if need_grad:
            grads = [torch.empty_like(hidden), torch.zeros_like(weight, dtype=torch.float32),
                     None if bias is None else torch.zeros_like(bias, dtype=torch.float32)]
        with torch.autocast(device, enabled=False):
            w = weight.to(dtype)  # (V, D)
            b = None if bias is None else bias.to(dtype)  # (V,)
            for start in range(0, hidden.size(0), chunk_rows):
                h = hidden[start:start + chunk_rows].to(dtype)  # (C, D)
                t = target[start:start + chunk_rows]  # (C,)
                logits = F.linear(h, w, b)  # (C, V)
                if not need_grad:
                    sums = (fused_smoothed_cross_entropy_sums if fused else smoothed_cross_entropy_sums)(
                        logits, t, eps, ignore_index)
                    loss_sum, nll_sum = loss_sum + sums[0], nll_sum + sums[1]
                    continue
                loss_c, nll_c, g = (fused_smoothed_cross_entropy_grad if fused else smoothed_cross_entropy_grad)(
                    logits, t, eps, ignore_index, scale)  # g (C, V) float32
                del logits
                loss_sum, nll_sum = loss_sum + loss_c, nll_sum + nll_c
                if grads[2] is not None:
                    grads[2] += g.sum(0)
                g = g.to(dtype)
                grads[0][start:start + chunk_rows] = g @ w  # (C, D)
                grads[1] += g.t() @ h  # (V, D)
        ctx.save_for_backward(*[x for x in grads if x is not None])
        ctx.has_bias = grads[2] is not None
        ctx.weight_dtype, ctx.bias_dtype = weight.dtype, None if bias is None else bias.dtype
        loss, nll = loss_sum * scale, nll_sum * scale
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_nll: Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        grad_hidden, grad_weight = saved[0] * grad_loss, saved[1] * grad_loss
        grad_bias = saved[2] * grad_loss if ctx.has_bias else None
        grad_bias = None if grad_bias is None else grad_bias.to(ctx.bias_dtype)
        return grad_hidden, grad_weight.to(ctx.weight_dtype), grad_bias, None, None, None, None, None, None


def projected_smoothed_cross_entropy(hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, eps: float,
                                     ignore_index: int, fused: bool = True, chunk_rows: int | None = None
                                     ) -> tuple[Tensor, Tensor]:
    """`label_smoothed_loss(F.linear(hidden, weight, bias), ...)` without the whole (N, V) logits.

    hidden (N, D) the decoder's features, weight (V, D) and bias (V,) or None its output layer, target (N,)
    -> (label-smoothed loss, plain NLL), means over target != ignore_index; the NLL carries no gradient.
    The same values and gradients, up to float rounding; `fused`: each chunk's loss compiled on CPU;
    `chunk_rows`: rows of logits at once (None: CHUNK_ROWS).
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    rows = (target != ignore_index).nonzero().squeeze(1)  # (N',) only real targets reach the output layer
    hidden, target = hidden.index_select(0, rows), target.index_select(0, rows)  # (N', D), (N',)
    need_grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (hidden, weight, bias))
    return _ProjectedLoss.apply(hidden, weight, bias, target, eps, ignore_index, fused, chunk_rows, need_grad)


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
