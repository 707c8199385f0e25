"""Greedy search, beam search and sampling over any model that speaks the Seq2Seq interface.

Decoders use only `model.encode`, `model.init_state`, `model.decode_step`, `DecoderState.select`,
`.expand` and `.attention`; they never ask which model they drive. Every function returns
`list[list[Hypothesis]]`: one list per source sentence, in input order, best first by
`Hypothesis.normalized` (greedy: exactly one hypothesis; beam: up to `nbest`; sampling:
`num_samples`).

Shared rules:
- Scores are sums of the model's log-probabilities (log-softmax of its logits, in float32).
  Banned tokens (pad and bos always, unk with `forbid_unk`, repeated n-grams with
  `no_repeat_ngram_size`) get -inf without renormalising the others.
- A sentence with `n` real source tokens is decoded for at most
  `min(max_len, max(1, int(max_len_a * n + max_len_b)))` steps (defaults 1.5, 10, 256), one
  token (possibly eos) per step. A hypothesis still open after the last step is returned as
  is with `finished=False`.
- Length for the penalty = scored steps = `len(tokens) + finished`. `normalized` is
  `score / ((5 + length) / 6) ** length_penalty` (GNMT), or `score / length` with `normalize`.
- Rows of finished sentences (and finished samples) are removed from the batch with
  `DecoderState.select`, so they stop costing compute. The hot path has no Python loop over
  rows and one or two host syncs per step; loops run only over hypotheses that just ended.
- `return_attention=True` gives each hypothesis its attention rows, reordered along with the
  beams; models whose states carry no attention (`state.attention` None) give None.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:  # the interface only; decoders never import a concrete model
    from translator.models.base import DecoderState, Seq2Seq

METHODS = ("greedy", "beam", "sample")


@dataclasses.dataclass
class Hypothesis:
    """One output sequence; `attention` (T_out, S_real) has a row per token of `tokens` and a
    column per real (non-pad) source token, or is None when not asked for / not available."""

    tokens: list[int]  # without bos and eos
    score: float  # raw sum of log-probs of tokens (+ eos when finished)
    normalized: float  # score after the length penalty: the ranking key
    finished: bool  # True when it ended with eos, False when cut at the maximum length
    attention: Tensor | None = None


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

    def penalty(self, length: int) -> float:
        if self.normalize:
            return float(max(length, 1))
        if self.length_penalty == 0.0:
            return 1.0
        return ((5.0 + length) / 6.0) ** self.length_penalty

    def log_probs(self, logits: Tensor, hist: Tensor) -> Tensor:
        """logits (R, V), hist (R, t) tokens so far -> log-probs (R, V) with banned tokens at -inf."""
        return self.ban(logits.float().log_softmax(-1), hist)  # (R, V)

    def top_log_probs(self, logits: Tensor, hist: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best allowed tokens of each row: log-probs and ids, (R, k) each.

        Equal to `log_probs(...).topk(k)` without writing the (R, V) log-probs: log-softmax is
        monotonic within a row, so the top k of the banned logits minus the row's log-sum-exp
        (over all tokens, as log_probs normalises before banning) are the top k log-probs.
        """
        x = logits.float()  # (R, V)
        lse = x.logsumexp(-1, keepdim=True)  # (R, 1)
        x = self.ban(x.clone() if x is logits else x, hist)  # never write into the caller's logits
        top, ids = x.topk(min(k, x.size(1)), dim=1)  # (R, k)
        return top - lse, ids

    def ban(self, scores: Tensor, hist: Tensor) -> Tensor:
        """Set banned tokens (and, with no_repeat_ngram_size, repeated n-grams) to -inf in place."""
        scores[:, self.banned] = -math.inf
        n = self.no_repeat_ngram_size
        if n > 0 and hist.size(1) >= n:
            _ban_repeated_ngrams(scores, hist, n)
        return scores


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
    limits = [min(max_len, max(1, int(max_len_a * n + max_len_b))) for n in src_lens]
    memory = model.encode(src, src_mask)
    state = model.init_state(memory, src_mask, need_attention=setup.return_attention)
    masks = list(src_mask.cpu()) if setup.return_attention else []
    return state, limits, masks


def _make_setup(bos_id: int, eos_id: int, pad_id: int, unk_id: int, forbid_unk: bool, no_repeat_ngram_size: int,
                length_penalty: float, normalize: bool, return_attention: bool) -> _Setup:
    if no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be >= 0, got {no_repeat_ngram_size}")
    if normalize and length_penalty != 0.0:
        raise ValueError(f"choose one of normalize=True and length_penalty={length_penalty}, not both")
    banned = {pad_id, bos_id} | ({unk_id} if forbid_unk else set())
    banned.discard(eos_id)  # some vocabularies reuse eos as bos; eos must stay reachable
    return _Setup(bos_id, eos_id, sorted(banned), no_repeat_ngram_size, float(length_penalty), normalize,
                  return_attention)


def _hyp(setup: _Setup, tokens: list[int], score: float, finished: bool, att: Tensor | None,
         mask: Tensor | None) -> Hypothesis:
    """Build a Hypothesis; att (T_out, S) is cut to the sentence's real source tokens."""
    if att is not None:
        att = att[:, mask.to(att.device)].cpu()  # (T_out, S_real)
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
               max_len_a: float, max_len_b: float, max_len: int) -> list[list[Hypothesis]]:
    """Beam search over all sentences at once; rows are (active sentence, beam), B_active * K."""
    K = beam_size
    state, limits, masks = _start(model, src, src_mask, setup, max_len_a, max_len_b, max_len)
    B, dev = src.size(0), src.device
    if K > 1:
        state = state.expand(K)  # B*K rows; each sentence's K beams share its source fields, uncopied
    sent = list(range(B))  # original index of each active sentence
    results: list[list[Hypothesis]] = [[] for _ in range(B)]
    tokens = torch.full((B * K,), setup.bos_id, dtype=torch.long, device=dev)
    scores = torch.zeros(B, K, device=dev)
    scores[:, 1:] = -math.inf  # all beams start identical: only the first one is live
    hist = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    att: Tensor | None = None
    rank = torch.arange(2 * K, device=dev)
    for t in range(max(limits)):
        logits, state = model.decode_step(tokens, state)
        Ba = len(sent)
        if t == 0 and setup.return_attention and state.attention is not None:
            att = torch.zeros(Ba * K, 0, state.attention.size(1), device=dev)
        # The 2K best of all K*V continuations are among the 2K best of each beam: rank only those.
        row_lp, row_tok = setup.top_log_probs(logits, hist, 2 * K)  # (Ba*K, 2K) each
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
            state = state.select(flat_rows.index_select(0, keep_rows))
        elif K > 1:
            state = state.select(flat_rows, same_source=True)  # beams move within their sentence
    return [sorted(r, key=lambda h: -h.normalized)[:nbest] for r in results]


def _filter_logits(x: Tensor, top_k: int, top_p: float) -> Tensor:
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


def _sample_loop(model: "Seq2Seq", src: Tensor, src_mask: Tensor, setup: _Setup, num_samples: int,
                 temperature: float, top_k: int, top_p: float, generator: torch.Generator | None,
                 max_len_a: float, max_len_b: float, max_len: int) -> list[list[Hypothesis]]:
    """Ancestral sampling; rows are independent samples, num_samples per sentence, dropped as they end."""
    state, limits, masks = _start(model, src, src_mask, setup, max_len_a, max_len_b, max_len)
    B, dev = src.size(0), src.device
    row_sent = torch.arange(B, device=dev).repeat_interleave(num_samples)  # (R,)
    if num_samples > 1:
        state = state.select(row_sent)
    row_limit = torch.tensor(limits, device=dev).index_select(0, row_sent)  # (R,)
    results: list[list[Hypothesis]] = [[] for _ in range(B)]
    tokens = torch.full((B * num_samples,), setup.bos_id, dtype=torch.long, device=dev)
    scores = torch.zeros(B * num_samples, device=dev)
    hist = torch.zeros(B * num_samples, 0, dtype=torch.long, device=dev)
    att: Tensor | None = None
    for t in range(max(limits)):
        logits, state = model.decode_step(tokens, state)
        lp = setup.log_probs(logits, hist)  # (R, V)
        if t == 0 and setup.return_attention and state.attention is not None:
            att = torch.zeros(lp.size(0), 0, state.attention.size(1), device=dev)
        probs = _filter_logits(lp / temperature, top_k, top_p).softmax(-1)  # (R, V)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (R,)
        scores = scores + lp.gather(1, tokens[:, None]).squeeze(1)  # the model's log-prob, not the tempered one
        hist, att = _append(hist, att, None, tokens, None if att is None else state.attention)
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
        tokens, scores, row_sent, row_limit = (x.index_select(0, keep) for x in (tokens, scores, row_sent, row_limit))
        hist = hist.index_select(0, keep)
        att = None if att is None else att.index_select(0, keep)
    return [sorted(r, key=lambda h: -h.normalized) for r in results]


# ---- public entry points -----------------------------------------------------------------------

@torch.inference_mode()
def greedy_decode(model: "Seq2Seq", src: Tensor, src_mask: Tensor, *, bos_id: int, eos_id: int, pad_id: int,
                  unk_id: int, max_len_a: float = 1.5, max_len_b: float = 10, max_len: int = 256,
                  no_repeat_ngram_size: int = 0, forbid_unk: bool = False, length_penalty: float = 0.0,
                  normalize: bool = False, return_attention: bool = False) -> list[list[Hypothesis]]:
    """Pick the most likely token at every step; src (B, S), src_mask (B, S) True = real token.

    Returns one single-hypothesis list per sentence. It is beam search with beam_size=1 (the same
    code), so both give identical tokens and scores; the penalty options only set `normalized`.
    """
    setup = _make_setup(bos_id, eos_id, pad_id, unk_id, forbid_unk, no_repeat_ngram_size, length_penalty,
                        normalize, return_attention)
    return _beam_loop(model, src, src_mask, setup, 1, 1, max_len_a, max_len_b, max_len)


@torch.inference_mode()
def beam_search(model: "Seq2Seq", src: Tensor, src_mask: Tensor, *, bos_id: int, eos_id: int, pad_id: int,
                unk_id: int, beam_size: int = 5, nbest: int = 1, length_penalty: float = 0.0,
                normalize: bool = False, max_len_a: float = 1.5, max_len_b: float = 10, max_len: int = 256,
                no_repeat_ngram_size: int = 0, forbid_unk: bool = False,
                return_attention: bool = False) -> list[list[Hypothesis]]:
    """Beam search for all sentences at once; src (B, S), src_mask (B, S) True = real token.

    Every step keeps the K best non-eos continuations per sentence; an eos among the K best
    candidates moves that hypothesis to the sentence's finished list. A sentence is done when K
    hypotheses have finished (the usual rule, which makes beam_size=1 greedy), at its last step
    (open beams are returned unfinished), or early, once it has `nbest` finished hypotheses and
    no live one can beat the worst of them. Since log-probs are <= 0 a live raw score s can only
    fall, so its descendants' normalized score is at most s / max(penalty(len)) over the lengths
    still reachable: exact for raw scores, conservative with a length penalty. Returns up to
    `nbest` hypotheses per sentence, best first by `normalized`.
    """
    if beam_size < 1 or not 1 <= nbest <= beam_size:
        raise ValueError(f"need beam_size >= 1 and 1 <= nbest <= beam_size; got beam_size={beam_size}, nbest={nbest}")
    setup = _make_setup(bos_id, eos_id, pad_id, unk_id, forbid_unk, no_repeat_ngram_size, length_penalty,
                        normalize, return_attention)
    return _beam_loop(model, src, src_mask, setup, beam_size, nbest, max_len_a, max_len_b, max_len)


@torch.inference_mode()
def sample(model: "Seq2Seq", src: Tensor, src_mask: Tensor, *, bos_id: int, eos_id: int, pad_id: int,
           unk_id: int, num_samples: int = 1, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           seed: int | None = None, max_len_a: float = 1.5, max_len_b: float = 10, max_len: int = 256,
           no_repeat_ngram_size: int = 0, forbid_unk: bool = False, length_penalty: float = 0.0,
           normalize: bool = False, return_attention: bool = False) -> list[list[Hypothesis]]:
    """Draw `num_samples` outputs per sentence; src (B, S), src_mask (B, S) True = real token.

    Tokens come from softmax(log_probs / temperature), restricted to the `top_k` best (0 = all)
    and to the nucleus of mass `top_p`. `seed` makes a call reproducible (same inputs, same
    batch); None uses torch's global generator. `score` is the model's own log-prob of the
    sample (before temperature). Samples are sorted best first by `normalized`.
    """
    if num_samples < 1 or temperature <= 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need num_samples >= 1, temperature > 0, top_k >= 0, 0 < top_p <= 1; got "
                         f"num_samples={num_samples}, temperature={temperature}, top_k={top_k}, top_p={top_p}")
    setup = _make_setup(bos_id, eos_id, pad_id, unk_id, forbid_unk, no_repeat_ngram_size, length_penalty,
                        normalize, return_attention)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=src.device)
        generator.manual_seed(seed)
    return _sample_loop(model, src, src_mask, setup, num_samples, temperature, top_k, top_p, generator,
                        max_len_a, max_len_b, max_len)


_FUNCTIONS = {"greedy": greedy_decode, "beam": beam_search, "sample": sample}


def decode(model: "Seq2Seq", src: Tensor, src_mask: Tensor, *, method: Literal["greedy", "beam", "sample"] = "beam",
           bos_id: int, eos_id: int, pad_id: int, unk_id: int, **options: Any) -> list[list[Hypothesis]]:
    """Dispatch to greedy_decode / beam_search / sample by name; options are that function's keywords."""
    if method not in _FUNCTIONS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of: {', '.join(METHODS)}")
    fn = _FUNCTIONS[method]
    allowed = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"option(s) {unknown} do not apply to method {method!r}; it accepts: {', '.join(allowed)}")
    return fn(model, src, src_mask, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, unk_id=unk_id, **options)
