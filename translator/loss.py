"""Label-smoothed cross-entropy and the plain NLL of the same logits, in one fused pass on CPU.

With eps spread over all V classes (as `F.cross_entropy(label_smoothing=eps)` does):

    loss_i = (1 - eps) * (lse_i - x_i[y_i]) + eps * (lse_i - mean_v x_i[v]),   lse_i = logsumexp_v x_i[v]

averaged over the non-pad targets. On CPU the eager version (and `F.cross_entropy`) walks the
(N, V) logits about ten times forward and backward (casts, log-softmax, its backward, the
smoothing term's dense gradient...): that was 20-35% of a bf16 Transformer training step with
V = 8000. `torch.compile` fuses it into a few passes (about 3x faster, measured in
`benchmarks/speed.py`). It needs a C++ compiler the first time (cached afterwards); without
one the eager formula runs instead, with one warning. Other devices run the formula eagerly.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor


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


_compiled = None
_compile_failed = False


def label_smoothed_loss(logits: Tensor, target: Tensor, eps: float, ignore_index: int,
                        fused: bool = True) -> tuple[Tensor, Tensor]:
    """`smoothed_cross_entropy`, compiled on CPU when `fused` (eager elsewhere, and if compiling fails)."""
    global _compiled, _compile_failed
    if not fused or _compile_failed or logits.device.type != "cpu":  # other devices: the same formula, eager
        return smoothed_cross_entropy(logits, target, eps, ignore_index)
    if _compiled is None:
        _compiled = torch.compile(smoothed_cross_entropy, dynamic=True)
    try:
        return _compiled(logits, target, eps, ignore_index)
    except Exception as error:  # no C++ compiler, an unsupported platform...: eager gives the same numbers
        _compile_failed = True
        warnings.warn(f"torch.compile of the loss failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                      "using the eager loss (same values, slower on CPU)", stacklevel=2)
        return smoothed_cross_entropy(logits, target, eps, ignore_index)
