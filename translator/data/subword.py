"""Subword regularization: the training split segmented anew every epoch (Kudo 2018; BPE-dropout).

Epoch e's segmentation of training pair i is drawn by SentencePiece (sampling for unigram models,
BPE-dropout for BPE models) from a seed derived from (seed, e, side): the same epoch gets the same
segmentation whatever the batching, the device count or the point a run resumes from, and every
rank draws the same one, so the global batch list stays the same on all ranks. Validation and
test are never sampled: they keep the deterministic segmentation.

This module is the one seam through which the training split's ids change per epoch: the
DataModule keeps the deterministic ids (length filter, val/test, fallback) and, with sampling
on, the train batches carry the epoch's ids themselves, as items (i, empty, src_ids, tgt_ids).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from translator.data.sampler import TokenBudgetBatchSampler
from translator.tokenizer import Tokenizer

_SIDES = {"src": 0, "tgt": 1}


def epoch_seed(seed: int, epoch: int, side: str) -> int:
    """The SentencePiece seed of one side's segmentation in `epoch` (a uint32 from (seed, epoch, side))."""
    return int(np.random.SeedSequence([int(seed), int(epoch), _SIDES[side]]).generate_state(1)[0])


class SubwordSampling:
    """Sampled segmentations of a training split, one per epoch: `segment(seed, epoch) -> (src_ids, tgt_ids)`.

    Args:
        tokenizer: the split's tokenizer.
        src_text, tgt_text: the raw pairs, in the split's order.
        src_ids, tgt_ids: their deterministic segmentation, used for a pair whose sample is empty
            or longer than `max_len` (the length filter was applied to the deterministic one).
        alpha: unigram: smoothing of the sampling distribution (smaller = more varied); BPE: dropout rate.
        nbest_size: unigram: sample among this many best segmentations (-1 = the whole lattice).
        max_len: longest sampled side kept (T counts bos/eos, as the length filter does).
    """

    def __init__(self, tokenizer: Tokenizer, src_text: Sequence[str], tgt_text: Sequence[str],
                 src_ids: Sequence[list[int]], tgt_ids: Sequence[list[int]], alpha: float, nbest_size: int,
                 max_len: int):
        if not (len(src_text) == len(tgt_text) == len(src_ids) == len(tgt_ids)):
            raise ValueError("src_text, tgt_text, src_ids and tgt_ids must have one entry per pair")
        self.tokenizer, self.src_text, self.tgt_text = tokenizer, list(src_text), list(tgt_text)
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.alpha, self.nbest_size, self.max_len = alpha, nbest_size, max_len
        self._cache: tuple[tuple[int, int], list[list[int]], list[list[int]]] | None = None
        self.fallbacks = 0  # pairs of the last segmented epoch that kept their deterministic ids

    def segment(self, seed: int, epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        """(src_ids, tgt_ids) of every pair in `epoch` of a run with data seed `seed` (the last one asked for is cached)."""
        if self._cache is not None and self._cache[0] == (seed, epoch):
            return self._cache[1], self._cache[2]
        tok = self.tokenizer
        src = tok.encode_sampled(self.src_text, "src", self.alpha, self.nbest_size, epoch_seed(seed, epoch, "src"))
        tgt = tok.encode_sampled(self.tgt_text, "tgt", self.alpha, self.nbest_size, epoch_seed(seed, epoch, "tgt"))
        self.fallbacks = 0
        for i, (s, t) in enumerate(zip(src, tgt)):
            if not s or len(s) > self.max_len or len(t) + 1 > self.max_len:
                src[i], tgt[i] = self.src_ids[i], self.tgt_ids[i]
                self.fallbacks += 1
        self._cache = ((seed, epoch), src, tgt)
        return src, tgt


class SubwordSamplingBatches(Sampler[list[tuple[int, bool, list[int], list[int]]]]):
    """Wraps the train batches: every epoch the sampled segmentation re-packs the token-budget
    batches (`TokenBudgetBatchSampler.set_lengths`) and each item carries its ids.

    `batches` yields lists of indices i or of (i, empty) pairs (context dropout) over `sampler`;
    the items become (i, empty, src_ids, tgt_ids) for `EncodedSplit`. The batch count follows the
    epoch's lengths, so Lightning must rebuild the train loader every epoch
    (`reload_dataloaders_every_n_epochs=1`, which the DataModule sets when sampling is on).
    """

    def __init__(self, batches: Iterable[list[Any]], sampler: TokenBudgetBatchSampler, sampling: SubwordSampling):
        self.batches, self.base, self.sampling = batches, sampler, sampling
        self._ids: tuple[tuple[int, int], list[list[int]], list[list[int]]] | None = None

    @property
    def sampler(self) -> "SubwordSamplingBatches":
        return self  # Lightning calls set_epoch on batch_sampler.sampler

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)
        self._prepare()

    def _prepare(self) -> tuple[list[list[int]], list[list[int]]]:
        """The current epoch's ids, with the base sampler batching their lengths (its seed: a resumed run's)."""
        key = (self.base.seed, self.base.epoch)
        if self._ids is None or self._ids[0] != key:
            src, tgt = self.sampling.segment(*key)
            self.base.set_lengths([len(s) for s in src], [len(t) + 1 for t in tgt])
            self._ids = (key, src, tgt)
        return self._ids[1], self._ids[2]

    def __len__(self) -> int:
        self._prepare()
        return len(self.base)

    def __iter__(self) -> Iterator[list[tuple[int, bool, list[int], list[int]]]]:
        src, tgt = self._prepare()
        for batch in self.batches:
            items = [item if isinstance(item, tuple) else (item, False) for item in batch]
            yield [(i, empty, src[i], tgt[i]) for i, empty in items]
