"""The search loops: greedy and beam search (one loop, greedy = width 1) and sampling, over any model that
speaks the Seq2Seq interface; `search` returns `config.num_candidates` hypotheses per sentence before
re-ranking and the n-best cut (translator/decoding/rerank.py). The rules they keep: translator/decoding/__init__.py."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from translator.decoding.config import DecodeConfig, decode_config

if TYPE_CHECKING:  # the interface only; decoders never import a concrete model
    from translator.models.base import DecoderState, Seq2Seq


@dataclasses.dataclass
class Hypothesis:
    """One output sequence; `attention` (T_out, S_real) has a row per token of `tokens` and a
    column per real (non-pad) source token, or is None when not asked for / not available."""

    tokens: list[int]  # without bos and eos
    score: float  # raw sum of log-probs of tokens (+ eos when finished)
    normalized: float  # score after the length penalty: the ranking key
    finished: bool  # True when it ended with eos, False when cut at the maximum length
    attention: Tensor | None = None
    lm_score: float | None = None  # log p(tokens | empty context), set by anti-LM re-ranking
    backward_score: float | None = None  # log p(context | tokens) under a backward model, set for MMI-bidi


@dataclasses.dataclass
class _Setup:
    """Per-call options shared by the search loops."""

    bos_id: int
    eos_id: int
    banned: list[int]  # token ids that are never emitted
    no_repeat_ngram_size: int
    length_penalty: float
    normalize: bool
    return_attention: bool
    min_len: int = 0
    byte_values: Tensor | None = None  # (V,) byte value of each byte piece, -1 for other pieces

    def __post_init__(self) -> None:
        bv = self.byte_values
        if bv is not None:
            # Never valid where a character may start: continuation bytes and impossible lead bytes.
            never = ((bv >= 0x80) & (bv <= 0xC1)) | (bv >= 0xF5)
            self.start_banned = never.nonzero().squeeze(1)  # (N,)

    def penalty(self, length: int) -> float:
        return length_penalty_of(length, self.length_penalty, self.normalize)

    def log_probs(self, logits: Tensor, hist: Tensor) -> Tensor:
        """logits (R, V), hist (R, t) tokens so far -> log-probs (R, V) with banned tokens at -inf."""
        return self.ban(logits.float().log_softmax(-1), hist)  # (R, V)

    def top_log_probs(self, logits: Tensor, hist: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best allowed tokens of each row: log-probs and ids, (R, k) each.

        `log_probs(...).topk(k)`: the fused log-softmax kernel writes a new (R, V) tensor (so the caller's
        logits are never written) in fewer passes than logsumexp + clone did: 1.7 vs 4.6 ms at R = 64,
        22.8 vs 32.1 ms at R = 320, V = 8000 (one thread, this machine, shared).
        """
        x = self.ban(logits.float().log_softmax(-1), hist)  # (R, V)
        return x.topk(min(k, x.size(1)), dim=1)  # (R, k) each

    def ban(self, scores: Tensor, hist: Tensor) -> Tensor:
        """Set banned tokens (and, with no_repeat_ngram_size, repeated n-grams) to -inf in place.

        Rows inside an open UTF-8 sequence may only continue it (no other rule applies to them).
        """
        pending_rows, inside = None, None
        if self.byte_values is not None:
            pending, lo, hi = _utf8_next_byte(hist, self.byte_values)
            if bool(pending.any()):
                pending_rows = pending.nonzero().squeeze(1)  # (P,)
                bv = self.byte_values.to(scores.device)
                allowed = (bv[None, :] >= lo[pending_rows, None]) & (bv[None, :] <= hi[pending_rows, None])
                inside = scores.index_select(0, pending_rows).masked_fill(~allowed, -math.inf)  # (P, V)
            scores[:, self.start_banned.to(scores.device)] = -math.inf
        scores[:, self.banned] = -math.inf
        if hist.size(1) < self.min_len:
            scores[:, self.eos_id] = -math.inf
        n = self.no_repeat_ngram_size
        if n > 0 and hist.size(1) >= n:
            _ban_repeated_ngrams(scores, hist, n)
        if pending_rows is not None:
            scores[pending_rows] = inside
        return scores

    def complete(self, tokens: list[int]) -> list[int]:
        """`tokens` without a trailing incomplete UTF-8 byte sequence (an output cut at its length limit)."""
        if self.byte_values is None or not tokens:
            return tokens
        hist = torch.tensor([tokens[-4:]], dtype=torch.long)
        pending, _, _ = _utf8_next_byte(hist, self.byte_values)
        if not bool(pending[0]):
            return tokens
        values = self.byte_values[hist[0]].tolist()
        cut = len(tokens)
        for v in reversed(values):  # drop the continuation bytes and their lead byte
            cut -= 1
            if v >= 0xC2:
                break
        return tokens[:cut]


def length_penalty_of(length: int, length_penalty: float, normalize: bool) -> float:
    """The divisor that turns a raw score into `normalized` (see the module docstring), length = scored steps."""
    if normalize:
        return float(max(length, 1))
    if length_penalty == 0.0:
        return 1.0
    return ((5.0 + length) / 6.0) ** length_penalty


def length_limit(src_len: int, max_len_a: float, max_len_b: float, max_len: int) -> int:
    """Steps (eos included) a sentence of `src_len` real source tokens is decoded for at most."""
    return min(max_len, max(1, int(max_len_a * src_len + max_len_b)))


def _utf8_next_byte(hist: Tensor, byte_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each row of hist (R, t): whether it ends inside a UTF-8 sequence, and the allowed range
    [lo, hi] of the next byte, (R,) each. Only the last 3 tokens matter (sequences are <= 4 bytes)."""
    R, t = hist.shape
    k = min(3, t)
    lo = torch.full((R,), 0x80, dtype=torch.long)
    hi = torch.full((R,), 0xBF, dtype=torch.long)
    if k == 0:
        return torch.zeros(R, dtype=torch.bool), lo, hi
    last = byte_values.to(hist.device)[hist[:, t - k:]].cpu()  # (R, k) byte values, -1 = not a byte piece
    is_cont = (last >= 0x80) & (last <= 0xBF)
    cont = torch.zeros(R, dtype=torch.long)  # trailing continuation bytes
    run = torch.ones(R, dtype=torch.bool)
    for j in range(k - 1, -1, -1):
        run = run & is_cont[:, j]
        cont += run.long()
    lead_at = k - 1 - cont  # (R,) -1 = no lead byte in the window
    lead = last.gather(1, lead_at.clamp(min=0)[:, None]).squeeze(1).masked_fill(lead_at < 0, -1)
    need = (((lead >= 0xC2) & (lead <= 0xDF)).long() + 2 * ((lead >= 0xE0) & (lead <= 0xEF)).long()
            + 3 * ((lead >= 0xF0) & (lead <= 0xF4)).long())
    pending = need > cont
    first = cont == 0  # the byte after the lead has a narrower range for some leads (no overlongs, surrogates)
    lo = torch.where(first & (lead == 0xE0), 0xA0, torch.where(first & (lead == 0xF0), 0x90, lo))
    hi = torch.where(first & (lead == 0xED), 0x9F, torch.where(first & (lead == 0xF4), 0x8F, hi))
    return pending.to(hist.device), lo.to(hist.device), hi.to(hist.device)


def _ban_repeated_ngrams(lp: Tensor, hist: Tensor, n: int) -> None:
    """Set lp[r, x] = -inf when (last n-1 tokens of hist[r]) + x already occurs in hist[r]; in place."""
    windows = hist.unfold(1, n, 1)  # (R, t-n+1, n) every n-gram so far
    prefix = hist[:, hist.size(1) - n + 1:]  # (R, n-1) the n-gram being started now
    match = (windows[:, :, :-1] == prefix[:, None, :]).all(-1)  # (R, t-n+1); all() of empty = True
    vocab = lp.size(1)
    banned = windows[:, :, -1].masked_fill(~match, vocab)  # (R, t-n+1); column V is a dummy
    mask = torch.zeros(lp.size(0), vocab + 1, dtype=torch.bool, device=lp.device)
    mask.scatter_(1, banned, True)
    lp.masked_fill_(mask[:, :vocab], -math.inf)


def _start(model: "Seq2Seq", src: Tensor, src_mask: Tensor, setup: _Setup, max_len_a: float,
           max_len_b: float, max_len: int) -> tuple["DecoderState", list[int], list[Tensor]]:
    """Validate, encode, and return (initial state, per-sentence step limits, per-sentence masks)."""
    if src.dim() != 2 or src_mask.shape != src.shape:
        raise ValueError(f"src and src_mask must both be (B, S); got {tuple(src.shape)} and {tuple(src_mask.shape)}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    src_mask = src_mask.bool()
    src_lens = src_mask.sum(1).tolist()
    empty = [i for i, n in enumerate(src_lens) if n == 0]
    if empty:
        raise ValueError(f"source sentence(s) {empty} have no real tokens (src_mask all False)")
    limits = [length_limit(n, max_len_a, max_len_b, max_len) for n in src_lens]
    memory = model.encode(src, src_mask)
    state = model.init_state(memory, src_mask, need_attention=setup.return_attention)
    masks = list(src_mask.cpu()) if setup.return_attention else []
    return state, limits, masks


def _make_setup(config: DecodeConfig, bos_id: int, eos_id: int, pad_id: int, unk_id: int, return_attention: bool,
                byte_values: Tensor | None) -> _Setup:
    banned = {pad_id, bos_id} | ({unk_id} if config.forbid_unk else set())
    banned.discard(eos_id)  # some vocabularies reuse eos as bos; eos must stay reachable
    if byte_values is not None:
        byte_values = torch.as_tensor(byte_values, dtype=torch.long).cpu()
        if not bool((byte_values >= 0).any()):
            byte_values = None  # no byte pieces: nothing to keep whole
    return _Setup(bos_id, eos_id, sorted(banned), config.no_repeat_ngram_size, float(config.length_penalty),
                  config.normalize, return_attention, config.min_len, byte_values)


def _hyp(setup: _Setup, tokens: list[int], score: float, finished: bool, att: Tensor | None,
         mask: Tensor | None) -> Hypothesis:
    """Build a Hypothesis; att (T_out, S) is cut to the sentence's real source tokens."""
    if not finished:
        tokens = setup.complete(tokens)
    if att is not None:
        att = att[:len(tokens), mask.to(att.device)].cpu()  # (T_out, S_real)
    return Hypothesis(tokens, score, score / setup.penalty(len(tokens) + finished), finished, att)


def _append(hist: Tensor, att: Tensor | None, rows: Tensor | None, tok: Tensor,
            step_att: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Reorder histories by rows (None = keep) and append this step's tokens (R,) / attention (R, S)."""
    if rows is not None:
        hist = hist.index_select(0, rows)
        att = None if att is None else att.index_select(0, rows)
    hist = torch.cat([hist, tok[:, None]], 1)  # (R, t+1)
    if att is not None:
        att = torch.cat([att, step_att[:, None].float()], 1)  # (R, t+1, S)
    return hist, att


def _cannot_improve(setup: _Setup, finished: list[Hypothesis], best_live: float, t: int, limit: int,
                    nbest: int) -> bool:
    """Whether no descendant of a live hypothesis (best raw score best_live after step t) can enter the n-best.

    Log-probs are <= 0, so a live raw score s <= 0 only falls, and a descendant finishes with a
    length between t + 2 and limit; s / penalty(length) is therefore at most s / max(penalty) over
    that range (penalty is monotonic: check both ends). Exact for raw scores, conservative otherwise.
    """
    if not finished:
        return False
    if best_live == -math.inf:
        return True  # every beam is dead (all continuations banned)
    if len(finished) < nbest:
        return False
    bound = best_live / max(setup.penalty(t + 2), setup.penalty(limit))
    worst = sorted(h.normalized for h in finished)[-nbest]  # the n-best's last entry
    return bound < worst


def _beam_loop(model: "Seq2Seq", src: Tensor, src_mask: Tensor, setup: _Setup, beam_size: int, nbest: int,
               max_len_a: float, max_len_b: float, max_len: int, trace: list | None = None) -> list[list[Hypothesis]]:
    """Beam search over all sentences at once; rows are (active sentence, beam), B_active * K.

    `trace`, when a list, gets one dict per step: the live beams of each active sentence (tokens so
    far, raw scores, parent beam) and the hypotheses that ended with eos (the lab's beam view).
    """
    K = beam_size
    state, limits, masks = _start(model, src, src_mask, setup, max_len_a, max_len_b, max_len)
    B, dev = src.size(0), src.device
    sent = list(range(B))  # original index of each active sentence
    results: list[list[Hypothesis]] = [[] for _ in range(B)]
    tokens = torch.full((B,), setup.bos_id, dtype=torch.long, device=dev)  # one row per sentence until step 0 ran
    scores = torch.zeros(B, K, device=dev)
    scores[:, 1:] = -math.inf  # all beams start identical: only the first one is live
    hist = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    att: Tensor | None = None
    rank = torch.arange(2 * K, device=dev)
    for t in range(max(limits)):
        logits, state = model.decode_step(tokens, state)
        Ba = len(sent)
        # The 2K best of all K*V continuations are among the 2K best of each beam: rank only those.
        if t == 0 and K > 1:
            # The K beams start identical, so the first step ran once per sentence (B rows, not B*K: as
            # CTranslate2 does); now each sentence's K beams become one group (models/base.py).
            state = state.expand(K)
            row_lp, row_tok = (x.repeat_interleave(K, 0) for x in setup.top_log_probs(logits, hist[::K], 2 * K))
        else:
            row_lp, row_tok = setup.top_log_probs(logits, hist, 2 * K)  # (Ba*K, 2K) each
        if t == 0 and setup.return_attention and state.attention is not None:
            att = torch.zeros(Ba * K, 0, state.attention.size(1), device=dev)
        W = row_lp.size(1)
        cand = (scores.view(-1, 1) + row_lp).view(Ba, K * W)  # (Ba, K*W)
        top_s, top_i = cand.topk(2 * K, dim=1)  # (Ba, 2K): at most K are eos, so >= K continue
        top_row = top_i // W + torch.arange(Ba, device=dev)[:, None] * K  # (Ba, 2K) flat parent row
        top_tok = row_tok.view(Ba, K * W).gather(1, top_i)
        is_eos = top_tok == setup.eos_id
        # An eos ranked among the first K ends a hypothesis; the first K non-eos stay live.
        fin = is_eos & (rank < K) & top_s.isfinite()
        order = (is_eos.long() * 2 * K + rank).topk(K, dim=1, largest=False).indices  # (Ba, K)
        live_s, live_row, live_tok = top_s.gather(1, order), top_row.gather(1, order), top_tok.gather(1, order)

        fin_nz = fin.nonzero()  # (F, 2) (sentence, rank) of hypotheses ending now
        fin_idx = fin_nz.tolist()  # the one host sync every step (plus best_live below)
        if fin_idx:
            rows = top_row[fin_nz[:, 0], fin_nz[:, 1]]  # (F,)
            fin_tokens = hist.index_select(0, rows).tolist()
            fin_scores = top_s[fin_nz[:, 0], fin_nz[:, 1]].tolist()
            fin_att = None if att is None else att.index_select(0, rows)
            for n, (i, _) in enumerate(fin_idx):
                s = sent[i]
                a = None if fin_att is None else fin_att[n]
                results[s].append(_hyp(setup, fin_tokens[n], fin_scores[n], True, a, masks[s] if masks else None))

        flat_rows = live_row.view(-1)  # (Ba*K,)
        step_att = None if att is None else state.attention.index_select(0, flat_rows)
        hist, att = _append(hist, att, flat_rows if K > 1 else None, live_tok.view(-1),
                            step_att)  # (Ba*K, t+1)
        if trace is not None:
            ended = [{"sentence": sent[i], "tokens": fin_tokens[n], "score": fin_scores[n]}
                     for n, (i, _) in enumerate(fin_idx)] if fin_idx else []
            trace.append({"step": t, "sentences": list(sent), "beams": hist.view(Ba, K, -1).tolist(),
                          "scores": live_s.tolist(), "parents": (live_row % K).tolist(), "finished": ended})

        # Done: K hypotheses finished (the usual beam rule, which keeps width 1 greedy), no live one
        # can still enter the n-best, or the last step (then open beams are returned unfinished).
        best_live = live_s.max(1).values.tolist() if any(results[s] for s in sent) else None
        done = set()
        for i, s in enumerate(sent):
            if len(results[s]) >= K:
                done.add(i)
            elif t + 1 >= limits[s]:
                done.add(i)
                live_scores, rows_i = live_s[i].tolist(), hist[i * K:(i + 1) * K].tolist()
                for j in range(K):
                    if math.isfinite(live_scores[j]):  # -inf rows are dead beams, not hypotheses
                        a = None if att is None else att[i * K + j]
                        results[s].append(_hyp(setup, rows_i[j], live_scores[j], False, a,
                                               masks[s] if masks else None))
            elif best_live is not None and _cannot_improve(setup, results[s], best_live[i], t, limits[s], nbest):
                done.add(i)
        scores, tokens = live_s, live_tok.view(-1)
        if done:
            keep = [i for i in range(len(sent)) if i not in done]
            if not keep:
                break
            sent = [sent[i] for i in keep]
            keep_t = torch.tensor(keep, device=dev)
            keep_rows = (keep_t[:, None] * K + torch.arange(K, device=dev)).view(-1)  # (Ba'*K,)
            scores, tokens = scores.index_select(0, keep_t), tokens.index_select(0, keep_rows)
            hist = hist.index_select(0, keep_rows)
            att = None if att is None else att.index_select(0, keep_rows)
            state = state.select(flat_rows.index_select(0, keep_rows))  # whole groups: the grouping stays
        elif K > 1:
            state = state.select(flat_rows)  # beams move within their sentences: source fields stay as they are
    return [sorted(r, key=lambda h: -h.normalized)[:nbest] for r in results]


def filter_logits(x: Tensor, top_k: int, top_p: float) -> Tensor:
    """Keep the top_k best tokens and the smallest set whose probability reaches top_p; x (R, V)."""
    if 0 < top_k < x.size(1):
        kth = x.topk(top_k, dim=1).values[:, -1:]  # (R, 1)
        x = x.masked_fill(x < kth, -math.inf)
    if top_p < 1.0:
        sorted_x, idx = x.sort(dim=1, descending=True)  # (R, V)
        probs = sorted_x.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches top_p
        x = x.masked_fill(drop.scatter(1, idx, drop), -math.inf)
    return x


def sampling_distribution(log_probs: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """What sampling draws the next token from: softmax(log_probs / temperature) cut to the top_k
    best and to the nucleus of mass top_p, renormalised; log_probs (R, V) -> probs (R, V)."""
    return filter_logits(log_probs / temperature, top_k, top_p).softmax(-1)


def _sample_loop(model: "Seq2Seq", src: Tensor, src_mask: Tensor, setup: _Setup, num_samples: int,
                 temperature: float, top_k: int, top_p: float, generator: torch.Generator | None,
                 max_len_a: float, max_len_b: float, max_len: int,
                 on_step: Callable[[list[int], list[list[int]]], None] | None = None) -> list[list[Hypothesis]]:
    """Ancestral sampling; rows are independent samples, num_samples per sentence, dropped as they end.

    `on_step(samples, tokens)`, when given, is called after every step with the live samples (index
    sentence * num_samples + j) and their tokens so far (a sample that just ended ends with eos).
    """
    state, limits, masks = _start(model, src, src_mask, setup, max_len_a, max_len_b, max_len)
    B, dev = src.size(0), src.device
    row_sent = torch.arange(B, device=dev).repeat_interleave(num_samples)  # (R,)
    if num_samples > 1:
        state = state.expand(num_samples)  # a sentence's samples are one group until the first one ends
    row_limit = torch.tensor(limits, device=dev).index_select(0, row_sent)  # (R,)
    results: list[list[Hypothesis]] = [[] for _ in range(B)]
    tokens = torch.full((B * num_samples,), setup.bos_id, dtype=torch.long, device=dev)
    scores = torch.zeros(B * num_samples, device=dev)
    hist = torch.zeros(B * num_samples, 0, dtype=torch.long, device=dev)
    sample_id = torch.arange(B * num_samples, device=dev)  # (R,) which sample each row is, for on_step
    att: Tensor | None = None
    for t in range(max(limits)):
        logits, state = model.decode_step(tokens, state)
        lp = setup.log_probs(logits, hist)  # (R, V)
        if t == 0 and setup.return_attention and state.attention is not None:
            att = torch.zeros(lp.size(0), 0, state.attention.size(1), device=dev)
        probs = sampling_distribution(lp, temperature, top_k, top_p)  # (R, V)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (R,)
        scores = scores + lp.gather(1, tokens[:, None]).squeeze(1)  # the model's log-prob, not the tempered one
        hist, att = _append(hist, att, None, tokens, None if att is None else state.attention)
        if on_step is not None:
            on_step(sample_id.tolist(), hist.tolist())
        is_eos = tokens == setup.eos_id
        ended = (is_eos | (row_limit <= t + 1)).nonzero().squeeze(1)
        ended_list = ended.tolist()  # the one host sync every step
        if not ended_list:
            continue
        sents, eos_flags = row_sent[ended].tolist(), is_eos[ended].tolist()
        seqs, seq_scores = hist.index_select(0, ended).tolist(), scores.index_select(0, ended).tolist()
        for n, r in enumerate(ended_list):
            s, fin = sents[n], eos_flags[n]
            toks = seqs[n][:-1] if fin else seqs[n]
            a = None if att is None else att[r, :len(toks)]
            results[s].append(_hyp(setup, toks, seq_scores[n], fin, a, masks[s] if masks else None))
        if len(ended_list) == tokens.size(0):
            break
        keep = (row_limit > t + 1).logical_and_(~is_eos).nonzero().squeeze(1)  # (R',)
        state = state.select(keep)
        tokens, scores, row_sent, row_limit, sample_id = (x.index_select(0, keep) for x in (tokens, scores, row_sent,
                                                                                          row_limit, sample_id))
        hist = hist.index_select(0, keep)
        att = None if att is None else att.index_select(0, keep)
    return [sorted(r, key=lambda h: -h.normalized) for r in results]



def search(model: "Seq2Seq", src: Tensor, src_mask: Tensor, config: DecodeConfig | None = None, *, bos_id: int,
           eos_id: int, pad_id: int, unk_id: int, byte_values: Tensor | None = None, return_attention: bool = False,
           trace: list | None = None, on_step: Callable[[list[int], list[list[int]]], None] | None = None,
           **options: Any) -> list[list[Hypothesis]]:
    """The search of `decode` alone: `config.num_candidates` hypotheses per sentence, best first by
    `normalized`, before re-ranking and the n-best cut (`rank`). `on_step`: see `_sample_loop`."""
    config = decode_config(config, **options)
    setup = _make_setup(config, bos_id, eos_id, pad_id, unk_id, return_attention, byte_values)
    with torch.inference_mode():
        if config.method == "sample":
            generator = None
            if config.seed is not None:
                generator = torch.Generator(device=src.device)
                generator.manual_seed(config.seed)
            return _sample_loop(model, src, src_mask, setup, config.num_candidates, config.temperature,
                                config.top_k, config.top_p, generator, config.max_len_a, config.max_len_b,
                                config.max_len, on_step)
        width = config.beam_size if config.method == "beam" else 1
        return _beam_loop(model, src, src_mask, setup, width, config.num_candidates if width > 1 else 1,
                          config.max_len_a, config.max_len_b, config.max_len, trace)

