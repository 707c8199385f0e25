"""Does a chat model know which reply belongs to a message? hits@1 of k by its own scores.

Each pair of a test split (or a seeded sample of `max_pairs` of them) puts its true reply among
k - 1 distractors: the replies of other pairs of the same split, of other texts, drawn with a
fixed seed (`evaluation.draw_distractors`). The model scores all k, and a hit is the true reply
strictly above every distractor (`evaluation.hits_at_1`; chance is 1/k). Three rankings:

    hits1_loglik   log p(r|c) / |r|                                 per-token likelihood
    hits1_antilm   log p(r|c) - lambda * log p(r)                    anti-LM (p(r): the empty context)
    hits1_mmi      log p(r|c) + beta * log p(c|r) - lambda * log p(r)  MMI-bidi (a backward model)

|r| counts scored steps (tokens + eos). hits1_antilm needs a model trained with context dropout,
hits1_mmi a backward model (`Translator.backward`); otherwise they are None. All scores come from
teacher forcing in length-sorted batches (`Translator.score_ids`): a pair is one row, and log p(r)
is computed once per distinct reply. On DailyDialog val (7,069 pairs, k = 20) that is 141k rows; the
default `max_pairs` keeps `translator evaluate` to a few minutes on two cores.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from translator.decoding import DecodeConfig, rerank_score
from translator.evaluation.metrics import draw_distractors, hits_at_1
from translator.inference.translator import Translator

DEFAULT_K = 20
#: Pairs ranked by default (a seeded sample; 0 = all): the standard error of a hits@1 near 40% is 1.5 points.
DEFAULT_MAX_PAIRS = 1000
SEED = 0


def relevance(translator: Translator, sources: Sequence[str], references: Sequence[str], k: int = DEFAULT_K,
              max_pairs: int = DEFAULT_MAX_PAIRS, lm_weight: float = 1.0, backward_weight: float = 1.0,
              batch_size: int = 64, seed: int = SEED) -> dict[str, Any]:
    """hits@1 of k three ways (module docstring) over (context, reply) pairs of one split.

    Returns hits1_loglik, hits1_antilm, hits1_mmi (None where the model cannot score that way),
    hits_k, relevance_pairs (pairs ranked), relevance_lm_weight and relevance_backward_weight.
    """
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} contexts but {len(references)} replies")
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0 (0 = every pair), got {max_pairs}")
    n = len(sources)
    rows = list(range(n))
    if max_pairs and max_pairs < n:
        rows = sorted(random.Random(seed).sample(rows, max_pairs))
    distractors = draw_distractors(references, rows, k, seed)
    contexts, replies = translator.encode_pairs(sources, references)
    groups = [[i, *others] for i, others in zip(rows, distractors)]  # the true reply first
    pairs = [(i, j) for i, group in zip(rows, groups) for j in group]
    forward = translator.score_ids([contexts[i] for i, _ in pairs], [replies[j] for _, j in pairs], batch_size)
    length = [len(replies[j]) + 1 for _, j in pairs]

    lm = None
    empty = translator.bundle.empty_source
    if empty:
        used = sorted({j for _, j in pairs})
        scored = translator.score_ids([list(empty)] * len(used), [replies[j] for j in used], batch_size)
        by_reply = dict(zip(used, scored))
        lm = [by_reply[j] for _, j in pairs]
    backward = None
    if translator.backward is not None:
        backward = translator.backward_scores([contexts[i] for i, _ in pairs], [replies[j] for _, j in pairs])

    def hits(score: list[float]) -> float:
        return hits_at_1([score[g * k:(g + 1) * k] for g in range(len(rows))])

    report: dict[str, Any] = {
        "hits1_loglik": hits([f / n_ for f, n_ in zip(forward, length)]),
        "hits1_antilm": None, "hits1_mmi": None, "hits_k": k, "relevance_pairs": len(rows),
        "relevance_lm_weight": lm_weight if lm is not None else None,
        "relevance_backward_weight": backward_weight if backward is not None else None,
    }
    # The decoders' own formula (`rerank_score`), without the length bonus: lengths of given replies are no choice.
    lm_or_none = lm if lm is not None else [None] * len(pairs)
    if lm is not None:
        antilm = DecodeConfig(lm_weight=lm_weight)
        report["hits1_antilm"] = hits([rerank_score(f, None, m, 0, antilm) for f, m in zip(forward, lm)])
    if backward is not None:
        mmi = DecodeConfig(lm_weight=lm_weight, backward_weight=backward_weight)
        report["hits1_mmi"] = hits([rerank_score(f, b, m, 0, mmi) for f, b, m in zip(forward, backward, lm_or_none)])
    return report
