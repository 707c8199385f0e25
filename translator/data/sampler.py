"""Token-budget batching with length bucketing, reproducible shuffling, DDP sharding and mid-epoch resume.

Examples are sorted by length once (ties broken in a fresh random order every epoch) and cut
into batches whose padded cost `B * max(S, T)` stays within `max_tokens`. Because the cut
points depend only on the sorted lengths, every epoch has the same number of batches (Lightning
reads `len()` once); what changes per epoch is which equal-length examples share a batch and the
order of the batches.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def pack(src_lens: np.ndarray, tgt_lens: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Greedy [start, end) cut points over examples in order so that each batch costs at most max_tokens."""
    bounds, start, max_len = [], 0, 0
    for i, (s, t) in enumerate(zip(src_lens.tolist(), tgt_lens.tolist())):
        longest = max(max_len, s, t)
        if i > start and (i - start + 1) * longest > max_tokens:
            bounds.append((start, i))
            start, longest = i, max(s, t)
        max_len = longest
    if len(src_lens) > start:
        bounds.append((start, len(src_lens)))
    return bounds


def split_to_multiple(bounds: list[tuple[int, int]], multiple: int) -> list[tuple[int, int]]:
    """Halve the largest batches until the count is a multiple of `multiple` (halving never adds cost)."""
    bounds = list(bounds)
    while len(bounds) % multiple:
        k = max(range(len(bounds)), key=lambda j: bounds[j][1] - bounds[j][0], default=None)
        if k is None or bounds[k][1] - bounds[k][0] < 2:
            break  # too few examples to split; __iter__ repeats batches instead
        a, b = bounds[k]
        bounds[k:k + 1] = [(a, (a + b) // 2), ((a + b) // 2, b)]
    return bounds


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Yields lists of example indices; each batch's padded cost B * max(S, T) is at most `max_tokens`.

    Lengths are those of the batch tensors: `src_lens` = S per example, `tgt_lens` = T per
    example (target tokens + 1, for the bos of tgt_in / eos of tgt_out). An example longer than
    the budget forms a batch of its own.

    DDP: the global batch list is the same on every rank (same seed and epoch); rank r takes
    batches r, r + R, ... . The largest batches are halved until the count divides by R, so the
    shards are disjoint, cover every example once, and have the same length on every rank. Only
    when there are fewer examples than ranks are batches repeated to fill the last step.

    Resume: `skip(epoch, n)` makes the next iteration of `epoch` start at this rank's batch n;
    `len()` stays the full epoch length, matching Lightning's own batch counter after a restart.
    """

    def __init__(self, src_lens: Sequence[int], tgt_lens: Sequence[int], max_tokens: int, shuffle: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.batches_yielded = 0  # of the current epoch on this rank (what a manual resume needs)
        self._skip: tuple[int, int] | None = None
        self.set_lengths(src_lens, tgt_lens)

    def set_lengths(self, src_lens: Sequence[int], tgt_lens: Sequence[int]) -> None:
        """Batch these lengths from now on (the same examples, segmented anew: subword sampling).

        The cut points follow the sorted lengths, so they are recomputed here; epoch, seed and a
        pending `skip` stay. The batch count may change with the lengths.
        """
        if len(src_lens) != len(tgt_lens):
            raise ValueError(f"{len(src_lens)} source lengths but {len(tgt_lens)} target lengths")
        self.src_lens = np.asarray(src_lens, dtype=np.int64)
        self.tgt_lens = np.asarray(tgt_lens, dtype=np.int64)
        # the sorted length sequence, hence the cut points, is the same for every epoch with these lengths
        order = self._order(np.arange(len(self.src_lens)))
        bounds = pack(self.src_lens[order], self.tgt_lens[order], self.max_tokens)
        self._bounds = split_to_multiple(bounds, self.num_replicas)
        self._num_global = len(self._bounds) + (-len(self._bounds) % self.num_replicas)

    @property
    def sampler(self) -> "TokenBudgetBatchSampler":
        """Lightning calls `set_epoch` on `batch_sampler.sampler`; pointing it here lets Lightning drive the epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, epoch: int, batches: int) -> None:
        """Start the next iteration of `epoch` at this rank's batch `batches` (mid-epoch resume)."""
        self._skip = (epoch, batches)

    def _order(self, perm: np.ndarray) -> np.ndarray:
        """`perm` stably sorted by (max(S, T), S, T): equal lengths keep the order of `perm`."""
        s, t = self.src_lens[perm], self.tgt_lens[perm]
        return perm[np.lexsort((t, s, np.maximum(s, t)))]

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All ranks' batches for `epoch` (default: the current one), in the order they are dealt out."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.src_lens)
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        order = self._order(rng.permutation(n) if rng is not None else np.arange(n))
        batches = [order[a:b].tolist() for a, b in self._bounds]
        if rng is not None:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        for k in range(-len(batches) % self.num_replicas if batches else 0):
            batches.append(batches[k])  # only when there are fewer examples than ranks
        return batches

    def __len__(self) -> int:
        return self._num_global // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.global_batches()[self.rank::self.num_replicas]
        start = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            start = min(self._skip[1], len(mine))
        self._skip = None
        self.batches_yielded = start
        for batch in mine[start:]:
            self.batches_yielded += 1
            yield batch

    def padding_fraction(self, epoch: int | None = None) -> float:
        """Fraction of pad positions in src + tgt over all batches of an epoch (all ranks)."""
        pad = total = 0
        for batch in self.global_batches(epoch):
            s, t = self.src_lens[batch], self.tgt_lens[batch]
            size = len(batch) * (int(s.max()) + int(t.max()))
            pad += size - int(s.sum()) - int(t.sum())
            total += size
        return pad / total if total else 0.0
