"""What every engine's candidates go through once, above the engines: re-ranking (anti-LM, MMI-bidi, length
bonus: `rerank_score`, the one formula) and the n-best cut (`rank`)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from translator.decoding.config import DecodeConfig
from translator.decoding.search import Hypothesis


def rank(results: list[list[Hypothesis]], config: DecodeConfig,
         score: Callable[[list[list[int]], list[list[int]], list[bool]], list[float]] | None = None,
         empty_source: Sequence[int] | None = None,
         backward: Callable[[list[list[int]], list[list[int]]], list[float]] | None = None,
         contexts: Sequence[Sequence[int]] | None = None) -> list[list[Hypothesis]]:
    """What every engine's candidates go through once: re-ranking when `config.reranks` (anti-LM: log p(r)
    from `score(sources, targets, finished)` after `empty_source`; MMI-bidi: log p(c|r) from
    `backward(contexts, replies)`, contexts[i] the source ids of sentence i), then the n-best cut."""
    if config.reranks:
        flat = [h for hyps in results for h in hyps]
        if config.lm_weight != 0.0 and flat:
            if not empty_source or score is None:
                raise ValueError("anti-LM re-ranking (lm_weight > 0) needs the empty-context source of a chat model "
                                 "trained with context dropout")
            lm = score([list(empty_source)] * len(flat), [h.tokens for h in flat], [h.finished for h in flat])
            for h, s in zip(flat, lm):
                h.lm_score = s
        if config.backward_weight != 0.0 and flat:
            if backward is None or contexts is None:
                raise ValueError("MMI-bidi re-ranking (backward_weight > 0) needs a backward model of "
                                 "p(message | reply): give --backward CKPT")
            pairs = [(list(contexts[i]), h) for i, hyps in enumerate(results) for h in hyps]
            for (_, h), s in zip(pairs, backward([c for c, _ in pairs], [h.tokens for _, h in pairs])):
                h.backward_score = s
        results = apply_rerank(results, config)
    return [hyps[:config.nbest] for hyps in results]


def apply_rerank(results: list[list[Hypothesis]], config: DecodeConfig) -> list[list[Hypothesis]]:
    """Set `normalized` = score + backward_weight * backward_score - lm_weight * lm_score + length_bonus * |r|
    (each score already set, or 0) and re-sort."""
    for hyps in results:
        for h in hyps:
            h.normalized = rerank_score(h.score, h.backward_score, h.lm_score, len(h.tokens) + h.finished, config)
    return [sorted(hyps, key=lambda h: -h.normalized) for hyps in results]


def rerank_score(forward: float, backward: float | None, lm: float | None, length: int, config: DecodeConfig) -> float:
    """log p(r|c) + beta * log p(c|r) - lambda * log p(r) + gamma * |r|; a term whose score is None (or whose
    weight is 0) counts 0. The one formula of the re-ranking score (decoding, evaluate's hits@1, the app)."""
    total = forward - (config.lm_weight * lm if lm is not None else 0.0)
    if config.backward_weight and backward is not None:
        total += config.backward_weight * backward
    return total + config.length_bonus * length
