"""Scores of given outputs by teacher forcing, through the model interface only: log p(output | source) in
batches (`sequence_log_probs`, anti-LM's log p(r)), under a backward model (`backward_log_probs`, MMI-bidi's
log p(c|r)), and step by step for one sentence alone (`teacher_forced_steps`, the confidence signals)."""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # the interface only
    from translator.models.base import Seq2Seq


@torch.inference_mode()
def sequence_log_probs(model: "Seq2Seq", src: Tensor, src_mask: Tensor, outputs: list[list[int]], *, bos_id: int,
                       eos_id: int, pad_id: int, finished: list[bool] | None = None,
                       batch_size: int = 256) -> list[float]:
    """log p(output_i | src_i) by teacher forcing (`model.forward`); src (N, S) one row per output.

    An output scores its tokens plus eos when `finished[i]` (the default), as the decoders do.
    """
    finished = [True] * len(outputs) if finished is None else finished
    scores: list[float] = []
    for start in range(0, len(outputs), batch_size):
        chunk = outputs[start:start + batch_size]
        ends = finished[start:start + batch_size]
        width = max(len(o) + 1 for o in chunk)
        tgt_in = torch.full((len(chunk), width), pad_id, dtype=torch.long, device=src.device)
        tgt_out = torch.full((len(chunk), width), pad_id, dtype=torch.long, device=src.device)
        for row, (toks, end) in enumerate(zip(chunk, ends)):
            tgt_in[row, :len(toks) + 1] = torch.tensor([bos_id, *toks], dtype=torch.long)
            target = [*toks, eos_id] if end else list(toks)
            tgt_out[row, :len(target)] = torch.tensor(target, dtype=torch.long)
        logits = model(src[start:start + batch_size], src_mask[start:start + batch_size], tgt_in)  # (N, T, V)
        lp = logits.float().log_softmax(-1).gather(2, tgt_out.unsqueeze(-1)).squeeze(-1)  # (N, T)
        scores += lp.masked_fill(tgt_out == pad_id, 0.0).sum(1).tolist()
    return scores



def backward_log_probs(backward: "Seq2Seq", contexts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]], *,
                       bos_id: int, eos_id: int, pad_id: int, batch_size: int = 256) -> list[float]:
    """log p(context_i | reply_i) under a backward model (source = the reply, target = the context, eos
    included), by teacher forcing in length-sorted batches; -inf for an empty reply (nothing to read).

    Ids are of one shared tokenizer (the backward model reads the forward model's vocabulary).
    """
    scores = [-math.inf] * len(replies)
    order = sorted((i for i, r in enumerate(replies) if r), key=lambda i: (len(replies[i]), len(contexts[i])))
    device = next(itertools.chain(backward.parameters(), backward.buffers()), torch.empty(0)).device
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(replies[i]) for i in rows)
        src = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for row, i in enumerate(rows):
            src[row, :len(replies[i])] = torch.tensor(list(replies[i]), dtype=torch.long)
        src = src.to(device)
        out = sequence_log_probs(backward, src, src != pad_id, [list(contexts[i]) for i in rows], bos_id=bos_id,
                                 eos_id=eos_id, pad_id=pad_id, batch_size=batch_size)
        for i, s in zip(rows, out):
            scores[i] = s
    return scores


@torch.inference_mode()
def teacher_forced_steps(model: "Seq2Seq", src_ids: Sequence[int], tokens: Sequence[int], finished: bool, *,
                         bos_id: int, eos_id: int, device: torch.device | str = "cpu"
                         ) -> tuple[list[float], list[float] | None]:
    """Score the output `tokens` (no bos/eos) of the source `src_ids` alone, step by step through the model
    interface: (log-probability of each token, eos included when `finished`; attention mass each source
    token received over the steps, None for models whose states carry no attention)."""
    src = torch.tensor([list(src_ids)], dtype=torch.long, device=device)  # (1, S)
    src_mask = torch.ones_like(src, dtype=torch.bool)  # (1, S) every token real
    state = model.init_state(model.encode(src, src_mask), src_mask, need_attention=True)
    inputs = [bos_id, *tokens]
    targets = [*tokens, eos_id] if finished else list(tokens)
    log_probs, mass = [], None
    for step, target in enumerate(targets):
        logits, state = model.decode_step(torch.tensor([inputs[step]], device=device), state)  # (1, V)
        log_probs.append(float(logits[0].float().log_softmax(-1)[target]))
        if state.attention is not None:
            row = state.attention[0, : src.size(1)].float()  # (S,)
            mass = row if mass is None else mass + row
    return log_probs, None if mass is None else mass.tolist()
