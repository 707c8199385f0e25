"""Greedy search, beam search and sampling over any model that speaks the Seq2Seq interface.

Every decoding option lives in `DecodeConfig` (one frozen dataclass: defaults, docs and
validation in one place); `decode(model, src, src_mask, config, ...)` is the one entry point that
the Translator, the Chatbot, `translate`, `evaluate`, the app and the benchmarks use.
`greedy_decode`, `beam_search` and `sample` are keyword shortcuts that build a DecodeConfig.

    config.py   DecodeConfig (a new decoding option is a field here), DecodeOptions, chat defaults, decode_config
    search.py   the search loops (greedy = beam of width 1, sampling) -> candidates per sentence
    scoring.py  log-probabilities of given outputs by teacher forcing (anti-LM, MMI-bidi, confidence)
    rerank.py   re-ranking and the n-best cut, once, above every engine (`rank`)
    here        `decode` = search, then rank; its keyword shortcuts

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
- Valid UTF-8 only: given the target vocabulary's byte pieces (`byte_values`, from
  `Tokenizer.tgt_byte_values`), a byte piece may only start a well-formed UTF-8 sequence or
  continue the open one, and nothing else (eos included) may interrupt it; an output cut at the
  length limit loses its incomplete last character. Byte-fallback pieces sampled alone are what
  made "펭\ufffd구이네요" before.
- `min_len` bans eos for the first `min_len` steps (a reply is never empty with min_len >= 1).
- Anti-LM re-ranking (Li et al. 2016, MMI-antiLM): with `lm_weight` or `length_bonus` set, the
  `candidates` hypotheses (beam n-best or samples) are re-ranked by
  `log p(r|c) - lm_weight * log p(r) + length_bonus * |r|`, where log p(r) is the same model
  scoring r after an empty context (`empty_source`, the `<sep>` token alone for chat models
  trained with context dropout) and |r| counts scored steps.
- MMI-bidi re-ranking (Li et al. 2016): with `backward_weight` beta set, the score adds
  `beta * log p(c|r)`, where p(c|r) is a backward model (trained on the same pairs reversed, one
  tokenizer) scoring the context after reading the reply (`backward_log_probs`), given to `rank`
  (or `decode`) by the caller that holds it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from translator.decoding.config import (CHAT_BIDI_DECODING, CHAT_DECODING, DEFAULT_MAX_LEN, LEGACY_OPTION_NAMES,
                                        METHODS, DecodeConfig, DecodeOptions, decode_config, with_recipe)
from translator.decoding.rerank import apply_rerank, rank, rerank_score
from translator.decoding.scoring import backward_log_probs, sequence_log_probs, teacher_forced_steps
from translator.decoding.search import (Hypothesis, filter_logits, length_limit, length_penalty_of,
                                        sampling_distribution, search)

if TYPE_CHECKING:  # the interface only; decoders never import a concrete model
    from translator.models.base import Seq2Seq

__all__ = [
    "CHAT_BIDI_DECODING", "CHAT_DECODING", "DEFAULT_MAX_LEN", "LEGACY_OPTION_NAMES", "METHODS", "DecodeConfig",
    "DecodeOptions", "Hypothesis", "apply_rerank", "backward_log_probs", "beam_search", "decode", "decode_config",
    "filter_logits", "greedy_decode", "length_limit", "length_penalty_of", "rank", "rerank_score", "sample",
    "sampling_distribution", "search", "sequence_log_probs", "teacher_forced_steps", "with_recipe",
]


def decode(model: "Seq2Seq", src: Tensor, src_mask: Tensor, config: DecodeConfig | None = None, *, bos_id: int,
           eos_id: int, pad_id: int, unk_id: int, byte_values: Tensor | None = None,
           empty_source: Sequence[int] | None = None, return_attention: bool = False, trace: list | None = None,
           on_step: Callable[[list[int], list[list[int]]], None] | None = None, backward: "Seq2Seq | None" = None,
           **options: Any) -> list[list[Hypothesis]]:
    """Decode src (B, S) with mask (B, S) (True = real token) as `config` says; best first per sentence.

    `options` are DecodeConfig fields, applied over `config` (or the defaults): a shortcut for
    `decode(..., DecodeConfig(method="beam", beam_size=4))`. `byte_values` (V,) keeps byte pieces
    in whole UTF-8 characters; `empty_source` (ids) is the context for anti-LM re-ranking; `trace`
    (a list) records every step of greedy / beam search (see `_beam_loop`); `on_step` sees every step
    of sampling (see `_sample_loop`: what a streaming reply shows while it is generated); `backward`
    (a model of p(source | output) on the same vocabulary) scores MMI-bidi re-ranking. `search` then `rank`.
    """
    config = decode_config(config, **options)
    results = search(model, src, src_mask, config, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, unk_id=unk_id,
                     byte_values=byte_values, return_attention=return_attention, trace=trace, on_step=on_step)

    def score(sources: list[list[int]], targets: list[list[int]], finished: list[bool]) -> list[float]:
        ids = torch.tensor(sources, dtype=torch.long, device=src.device)
        return sequence_log_probs(model, ids, torch.ones_like(ids, dtype=torch.bool), targets, bos_id=bos_id,
                                  eos_id=eos_id, pad_id=pad_id, finished=finished)

    def backward_score(contexts: list[list[int]], replies: list[list[int]]) -> list[float]:
        return backward_log_probs(backward, contexts, replies, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)

    contexts = [row[m].tolist() for row, m in zip(src, src_mask.bool())]
    return rank(results, config, score, empty_source, backward_score if backward is not None else None, contexts)


def greedy_decode(model: "Seq2Seq", src: Tensor, src_mask: Tensor, **options: Any) -> list[list[Hypothesis]]:
    """`decode` with method greedy: the most likely token at every step (beam search of width 1).

    Keyword options are DecodeConfig fields plus decode's (bos_id, ..., return_attention).
    """
    return decode(model, src, src_mask, method="greedy", **options)


def beam_search(model: "Seq2Seq", src: Tensor, src_mask: Tensor, **options: Any) -> list[list[Hypothesis]]:
    """`decode` with method beam.

    Every step keeps the K best non-eos continuations per sentence; an eos among the K best
    candidates moves that hypothesis to the sentence's finished list. A sentence is done when K
    hypotheses have finished (the usual rule, which makes beam_size=1 greedy), at its last step
    (open beams are returned unfinished), or early, once it has `nbest` finished hypotheses and
    no live one can beat the worst of them. Since log-probs are <= 0 a live raw score s can only
    fall, so its descendants' normalized score is at most s / max(penalty(len)) over the lengths
    still reachable: exact for raw scores, conservative with a length penalty. Returns up to
    `nbest` hypotheses per sentence, best first by `normalized`.
    """
    return decode(model, src, src_mask, method="beam", **options)


def sample(model: "Seq2Seq", src: Tensor, src_mask: Tensor, *, num_samples: int | None = None,
           **options: Any) -> list[list[Hypothesis]]:
    """`decode` with method sample; `num_samples` (= nbest) outputs per sentence.

    Tokens come from softmax(log_probs / temperature), restricted to the `top_k` best (0 = all)
    and to the nucleus of mass `top_p`. `seed` makes a call reproducible (same inputs, same
    batch); None uses torch's global generator. `score` is the model's own log-prob of the
    sample (before temperature). Samples are sorted best first by `normalized`.
    """
    if num_samples is not None:
        options["nbest"] = num_samples
    return decode(model, src, src_mask, method="sample", **options)
