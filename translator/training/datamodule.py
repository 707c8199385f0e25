"""Seq2SeqDataModule: dataset name -> tokenizer -> encoded splits -> token-budget batches.

Batches are dicts (batch first, padded with pad_id):
    src      (B, S) long     source ids, no bos/eos
    src_mask (B, S) bool     True = real token
    tgt_in   (B, T) long     bos + y
    tgt_out  (B, T) long     y + eos
    src_text, tgt_text       lists of B raw strings (tgt_text is the BLEU reference); val/test only
                             (and train with subword sampling, which re-segments it): otherwise the
                             training split keeps no text, only its token store
    index    (B,) long       position of each example in its split

Encoded splits live in a token store on disk (token_store.py), keyed by the corpus files and the
tokenizer; every process (DDP rank, DataLoader worker) memory-maps the same files. A split's ids
are one object per side (`EncodedSplit.src_ids` / `tgt_ids`: any sequence of id lists, a
`TokenColumn` over the store here); a per-epoch re-encoding of the training text (subword
sampling) replaces the train split's columns and leaves batching and resume as they are.

Multi-GPU: the train batches are sharded by our own sampler, so Lightning must not inject a
DistributedSampler: configs set `trainer.use_distributed_sampler: false` (it changes nothing on
one device). Val/test are not sharded: every rank sees the whole split, so corpus BLEU needs no
gathering.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import translator.data.token_store as token_store
from translator.data import tokenizer_cache
from translator.artifacts.checkpoint import checkpoint_tokenizer
from translator.data.readers import Pair
from translator.data.registry import (SPLIT_SEED, find_dataset, get_spec, iter_pairs, load_pairs, resolve_languages,
                                      split_files)
from translator.data.sampler import TokenBudgetBatchSampler
from translator.data.subword import SubwordSampling, SubwordSamplingBatches
from translator.data.tokenizer_cache import TokenizerSettings
from translator.tasks import DEFAULT_CONTEXT_TURNS, get_task
from translator.tokenizer import Tokenizer

log = logging.getLogger("translator.data")

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class EncodedSplit(Dataset):
    """One tokenized split; item i is {"index", "src", "tgt"} (ids without bos/eos), plus "src_text" and
    "tgt_text" when the split keeps its text (val/test: the references).

    `src_ids` / `tgt_ids` are sequences of id lists: plain lists, or `TokenColumn`s over a token
    store (whose lengths come from the offsets, without reading a token).
    Item `(i, True)` is pair i with an empty context: the source is `empty_source` (the
    `<sep>` token alone), as context dropout asks for. Item `(i, empty, src_ids, tgt_ids)` is pair
    i with the ids of this epoch's sampled segmentation (translator/data/subword.py).
    """

    def __init__(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                 src_text: Sequence[str] | None = None, tgt_text: Sequence[str] | None = None,
                 empty_source: list[int] | None = None):
        self.src_ids, self.tgt_ids, self.src_text, self.tgt_text = src_ids, tgt_ids, src_text, tgt_text
        self.empty_source = empty_source or []

    def __len__(self) -> int:
        return len(self.src_ids)

    @staticmethod
    def _lengths(ids: Sequence[Sequence[int]]) -> np.ndarray:
        lengths = getattr(ids, "lengths", None)
        return lengths if lengths is not None else np.fromiter(map(len, ids), np.int64, count=len(ids))

    @property
    def src_lens(self) -> np.ndarray:
        """(n,) int64 source tokens per pair."""
        return self._lengths(self.src_ids)

    @property
    def tgt_lens(self) -> np.ndarray:
        """(n,) int64 target tokens per pair (without bos/eos)."""
        return self._lengths(self.tgt_ids)

    def __getitem__(self, item: int | tuple[int, bool]) -> dict[str, Any]:
        i, empty, *ids = item if isinstance(item, tuple) else (item, False)
        src, tgt = ids if ids else (self.src_ids[i], self.tgt_ids[i])
        example = {"index": i, "src": self.empty_source if empty else src, "tgt": tgt}
        if self.tgt_text is not None:
            example["src_text"] = "" if empty else self.src_text[i]
            example["tgt_text"] = self.tgt_text[i]
        return example


def empty_context_mask(n: int, rate: float, seed: int, epoch: int) -> list[bool]:
    """Which of n training pairs get an empty context in `epoch`: a fresh share `rate` every epoch,
    the same for the same (seed, epoch) whatever the batching, device count or resume point."""
    if rate <= 0.0:
        return [False] * n
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) + 7919)
    return (torch.rand(n, generator=generator) < rate).tolist()


class ContextDropoutBatches(Sampler[list[tuple[int, bool]]]):
    """Wraps the train batch sampler: each index i becomes (i, empty) with `empty` drawn by
    `empty_context_mask` for the sampler's current epoch (so a chat model also learns p(reply)).

    Emptying a source only shortens it, so every batch stays within its token budget.
    """

    def __init__(self, batches: TokenBudgetBatchSampler, rate: float, seed: int):
        self.batches, self.rate, self.seed = batches, rate, seed
        self._mask: tuple[int, list[bool]] | None = None

    @property
    def sampler(self) -> TokenBudgetBatchSampler:
        return self.batches  # Lightning calls set_epoch on batch_sampler.sampler

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        epoch = self.batches.epoch
        if self._mask is None or self._mask[0] != epoch:
            self._mask = (epoch, empty_context_mask(len(self.batches.src_lens), self.rate, self.seed, epoch))
        mask = self._mask[1]
        for batch in self.batches:
            yield [(i, mask[i]) for i in batch]


def collate(examples: list[dict[str, Any]], pad_id: int, bos_id: int, eos_id: int) -> dict[str, Any]:
    """Pad a list of EncodedSplit items into one batch dict (see the module docstring for the keys)."""
    max_src = max(len(e["src"]) for e in examples)
    max_tgt = max(len(e["tgt"]) for e in examples) + 1  # +1: bos in tgt_in, eos in tgt_out
    # padding Python lists and converting once is ~4x faster than filling a tensor row by row
    src = torch.tensor([e["src"] + [pad_id] * (max_src - len(e["src"])) for e in examples])  # (B, S)
    tgt_in = torch.tensor([[bos_id, *e["tgt"]] + [pad_id] * (max_tgt - 1 - len(e["tgt"]))
                           for e in examples])  # (B, T)
    tgt_out = torch.tensor([[*e["tgt"], eos_id] + [pad_id] * (max_tgt - 1 - len(e["tgt"]))
                            for e in examples])  # (B, T)
    src_lens = torch.tensor([len(e["src"]) for e in examples])  # (B,)
    batch = {
        "src": src,
        "src_mask": torch.arange(max_src)[None, :] < src_lens[:, None],  # (B, S) True = real token
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "index": torch.tensor([e["index"] for e in examples], dtype=torch.long),
    }
    if "tgt_text" in examples[0]:
        batch["src_text"] = [e["src_text"] for e in examples]
        batch["tgt_text"] = [e["tgt_text"] for e in examples]
    return batch


class _ResumableLoader(DataLoader):
    """Train DataLoader that Lightning treats as resumable (`_Stateful`); its state is the DataModule's."""

    def __init__(self, *args: Any, datamodule: "Seq2SeqDataModule", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.datamodule = datamodule

    def state_dict(self) -> dict[str, Any]:
        return self.datamodule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.datamodule.load_state_dict(state)


class Seq2SeqDataModule(L.LightningDataModule):
    """A registered dataset as token-budget batches for translation (src -> tgt) or chat (context -> reply).

    Args:
        dataset: registered name: multi30k, tatoeba-eng-fra, chatbot-ko, dailydialog.
        src_lang: source language; None = the dataset's default (multi30k de, tatoeba en, chat: same as tgt).
        tgt_lang: target language; None = the dataset's default (multi30k en, tatoeba fr).
        data_dir: folder holding `<dataset>/`; None = $TRANSLATOR_DATA_DIR, then data/.
        tokenizer_path: an existing tokenizer to reuse: a SentencePiece model, or a translator checkpoint
            (.ckpt or exported directory) whose tokenizer is taken as it is; None = train one (cached in cache_dir).
        cache_dir: where trained tokenizers and encoded splits (token stores) are cached, keyed by the
            corpus files (path, size, mtime), the reading options and the tokenizer.
        vocab_size: SentencePiece vocabulary size (per side when joint_vocab is false).
        tokenizer_type: "unigram" or "bpe".
        joint_vocab: one vocabulary for source and target (needed for weight tying).
        character_coverage: SentencePiece character coverage (1.0 keeps every character).
        max_tokens: token budget per train batch: B * max(S, T) <= max_tokens.
        val_max_tokens: token budget per val/test batch; None = max_tokens.
        max_len: train pairs with more than max_len tokens on either side (T counts bos/eos) are dropped.
        context_turns: dailydialog only: previous turns joined by " <sep> " as the source.
        reverse: swap the two sides of every pair (target -> source). For chat this trains the backward
            model p(message | reply) that MMI re-ranking uses; give it the forward model's tokenizer
            (`tokenizer_path: FORWARD.ckpt`) so that both score the same pieces.
        context_dropout: chat only: share of training pairs whose source is replaced by an empty
            context (the `<sep>` token alone), drawn anew every epoch from (seed, epoch). The model
            then also scores p(reply) with no context, which anti-LM re-ranking needs; in [0, 1).
        subword_alpha: subword regularization of the training split, a new segmentation every epoch drawn
            from (seed, epoch); val/test stay deterministic. Unigram tokenizers: SentencePiece sampling
            with this smoothing alpha (0.1 with nbest 64 is Kudo's setting); BPE: BPE-dropout with this
            rate (0.1). 0 = off.
        subword_nbest_size: unigram sampling draws among this many best segmentations (-1 = the whole
            lattice; with alpha 0.1 that doubles the token count on Multi30k, nbest 64 adds ~10%).
        seed: shuffling seed; epoch e uses (seed, e). The held-out splits use a fixed seed instead.
        num_workers: DataLoader worker processes.
        tokenizer_sample: the tokenizer is trained on at most this many training pairs, a uniform sample
            with a fixed seed (all pairs when the corpus is smaller). 200k pairs (400k sentences) is plenty
            for an 8k-32k vocabulary; the trainer's memory grows with it (300k: 1.02 GB peak at 1M pairs).
        encode_workers: processes that encode a split the first time; None = one per CPU (at most 8),
            0 = this process only.
        replay: mixed fine-tuning against forgetting: this share of the training pairs comes from
            `replay_dataset` (the data of the model fine-tuned from; `--model.init_from` fills it in), a
            fixed sample drawn with `seed`, encoded with the same tokenizer; in [0, 1), 0 = off.
        replay_dataset: the registered dataset replayed (train split); None = the parent's (fine-tuning).
        replay_src_lang: its source language; None = the parent's, else the dataset's default.
        replay_tgt_lang: its target language; None = the parent's, else the dataset's default.
    """

    def __init__(self, dataset: str = "multi30k", src_lang: str | None = None, tgt_lang: str | None = None,
                 data_dir: str | None = None, tokenizer_path: str | None = None, cache_dir: str = "data/cache",
                 vocab_size: int = 8000, tokenizer_type: str = "unigram", joint_vocab: bool = True,
                 character_coverage: float = 1.0, max_tokens: int = 4096, val_max_tokens: int | None = None,
                 max_len: int = 128, context_turns: int = DEFAULT_CONTEXT_TURNS, context_dropout: float = 0.0,
                 subword_alpha: float = 0.0, subword_nbest_size: int = 64, seed: int = 1234, num_workers: int = 0,
                 tokenizer_sample: int = 200_000, encode_workers: int | None = None, reverse: bool = False,
                 replay: float = 0.0, replay_dataset: str | None = None, replay_src_lang: str | None = None,
                 replay_tgt_lang: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        # fail fast on an unknown name or language pair, before any file is read
        self.src_lang, self.tgt_lang = resolve_languages(dataset, src_lang, tgt_lang)
        for name, value in (("vocab_size", vocab_size), ("max_tokens", max_tokens), ("max_len", max_len),
                            ("context_turns", context_turns), ("val_max_tokens", val_max_tokens or 1),
                            ("tokenizer_sample", tokenizer_sample)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.spec = get_spec(dataset)
        if not 0.0 <= context_dropout < 1.0:
            raise ValueError(f"context_dropout must be in [0, 1), got {context_dropout}")
        if context_dropout and not get_task(self.spec.task).conversational:
            raise ValueError(f"context_dropout applies to chat datasets; {dataset!r} is a {self.spec.task} dataset")
        if tokenizer_type not in tokenizer_cache.TOKENIZER_TYPES:
            raise ValueError(f"tokenizer_type must be 'unigram' or 'bpe', got {tokenizer_type!r}")
        if not (0.0 <= subword_alpha < (1.0 if tokenizer_type == "bpe" else math.inf)):
            kind = "a BPE-dropout rate in [0, 1)" if tokenizer_type == "bpe" else "a finite number >= 0"
            raise ValueError(f"subword_alpha must be {kind} (0 = no subword sampling), got {subword_alpha}")
        if subword_alpha and subword_nbest_size != -1 and subword_nbest_size < 2:
            raise ValueError(f"subword_nbest_size must be -1 (the whole lattice) or at least 2, got {subword_nbest_size}")
        if not 0.0 <= replay < 1.0:
            raise ValueError(f"replay must be a share in [0, 1) (0 = off), got {replay}")
        if replay and not replay_dataset:
            raise ValueError("--data.replay needs the data to replay: --data.replay_dataset NAME, or fine-tune "
                             "(--model.init_from CKPT replays the checkpoint's own data)")
        if replay and subword_alpha:
            raise ValueError("--data.replay and --data.subword_alpha cannot be combined (the replayed pairs keep "
                             "no text to re-segment)")
        self.replay = replay
        self.replay_source = (resolve_languages(replay_dataset, replay_src_lang, replay_tgt_lang)
                              if replay else None)  # fail fast on an unknown name or pair
        self.dataset, self.data_dir, self.tokenizer_path, self.cache_dir = dataset, data_dir, tokenizer_path, cache_dir
        self.vocab_size, self.tokenizer_type, self.joint_vocab = vocab_size, tokenizer_type, joint_vocab
        self.character_coverage, self.context_turns = character_coverage, context_turns
        self.context_dropout, self.reverse = context_dropout, reverse
        self.subword_alpha, self.subword_nbest_size = subword_alpha, subword_nbest_size
        self._subword: SubwordSampling | None = None
        self.max_tokens, self.val_max_tokens, self.max_len = max_tokens, val_max_tokens or max_tokens, max_len
        self.seed, self.num_workers = seed, num_workers
        self.tokenizer_sample, self.encode_workers = tokenizer_sample, encode_workers
        self._pairs: dict[str, list[Pair]] = {}
        self._empty: dict[str, int] = {}
        self._tokenizer: Tokenizer | None = None
        self.tokenizer_file: Path | None = None  # where the tokenizer was loaded from or cached
        self.splits: dict[str, EncodedSplit] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self._train_sampler: TokenBudgetBatchSampler | None = None
        self._stats_sampler: dict[str, TokenBudgetBatchSampler] = {}
        self._resume: dict[str, Any] | None = None

    # ---- text ----------------------------------------------------------------------------
    def pairs(self, split: str) -> list[Pair]:
        """Raw (source, target) text pairs of a split, read once and kept (val/test; training streams)."""
        if split not in self._pairs:
            stats: dict[str, int] = {}
            pairs = load_pairs(self.dataset, split, self.src_lang, self.tgt_lang, self.data_dir,
                               self.context_turns, SPLIT_SEED, stats=stats)
            self._pairs[split] = [(t, s) for s, t in pairs] if self.reverse else pairs
            self._empty[split] = stats.get("empty", 0)
        return self._pairs[split]

    def sample_pairs(self, n: int, split: str = "train") -> list[Pair]:
        """At most n pairs of a split: a uniform sample with a fixed seed, read as a stream."""
        return token_store.seeded_sample(self._stream(split), n, SPLIT_SEED)

    @property
    def data_path(self) -> Path:
        """The folder the dataset is read from."""
        return find_dataset(self.dataset, "train", self.src_lang, self.tgt_lang, self.data_dir)

    @property
    def task(self) -> str:
        """"translation" or "chat" (from the dataset's spec)."""
        return self.spec.task

    @property
    def chat_context_turns(self) -> int | None:
        """Turns a chatbot of this data sends, its message included (None: not a chat dataset)."""
        return self.spec.chat_context_turns(self.context_turns)

    def _read_key(self, split: str) -> dict[str, Any]:
        """What a split's pairs depend on: its files (path, size, mtime) and how they are read."""
        files = split_files(self.dataset, split, self.src_lang, self.tgt_lang, self.data_dir)
        key = {"dataset": self.dataset, "split": split, "src": self.src_lang, "tgt": self.tgt_lang,
               "files": token_store.file_identity(files), "split_seed": SPLIT_SEED,
               "context_turns": self.context_turns if self.spec.reader == "dialogues" else None}
        return {**key, "reverse": True} if self.reverse else key  # unreversed keys stay as earlier versions wrote them

    def _stream(self, split: str, stats: dict | None = None):
        """The pairs of a split as a stream (the file is never whole in memory where its reader allows)."""
        pairs = iter_pairs(self.dataset, split, self.src_lang, self.tgt_lang, self.data_dir, self.context_turns,
                           SPLIT_SEED, stats=stats)
        return ((t, s) for s, t in pairs) if self.reverse else pairs

    # ---- tokenizer -----------------------------------------------------------------------
    @property
    def tokenizer_settings(self) -> TokenizerSettings:
        return TokenizerSettings(self.vocab_size, self.tokenizer_type, self.joint_vocab, self.character_coverage,
                                 self.tokenizer_sample)

    def _build_tokenizer(self) -> Tokenizer:
        """The tokenizer `tokenizer_path` names (a SentencePiece model, or a checkpoint's, taken as it is),
        else the one trained for this corpus and settings (tokenizer_cache.py)."""
        if self.tokenizer_path is not None:
            self.tokenizer_file = Path(self.tokenizer_path)
            if self.tokenizer_file.suffix == ".ckpt" or self.tokenizer_file.is_dir():
                return checkpoint_tokenizer(self.tokenizer_file)
            return Tokenizer.load(self.tokenizer_path)
        self.tokenizer_file = tokenizer_cache.cache_file(self.cache_dir, self.dataset, self.src_lang, self.tgt_lang,
                                                         self.tokenizer_settings, self._read_key("train"))
        return tokenizer_cache.load_or_train(self.tokenizer_file, self.tokenizer_settings,
                                             lambda: self._stream("train"))

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer, loaded or trained on first use (also outside a Trainer)."""
        if self._tokenizer is None:
            self._tokenizer = self._build_tokenizer()
            if self.tokenizer_path is None:
                tokenizer_cache.warn_if_smaller(self._tokenizer, self.vocab_size)
        return self._tokenizer

    @property
    def src_vocab_size(self) -> int:
        return self.tokenizer.src_vocab_size

    @property
    def tgt_vocab_size(self) -> int:
        return self.tokenizer.tgt_vocab_size

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    @property
    def bos_id(self) -> int:
        return self.tokenizer.bos_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def unk_id(self) -> int:
        return self.tokenizer.unk_id

    # ---- Lightning hooks -----------------------------------------------------------------
    def prepare_data(self) -> None:
        """Train (or load) and cache the tokenizer, and encode the splits of the Trainer's stage into
        token stores; runs once per node before setup, so the other ranks only map the files."""
        _ = self.tokenizer
        fn = getattr(getattr(getattr(self, "trainer", None), "state", None), "fn", None)
        for split in _STAGE_SPLITS.get(getattr(fn, "value", fn), ()):
            try:
                self._store(split)
            except FileNotFoundError:
                pass  # setup reports a missing split

    def setup(self, stage: str | None = None) -> None:
        """Encode the splits a stage needs (fit: train + val; validate: val; test/predict: test)."""
        if stage == "fit" and self.subword_alpha and self.trainer is not None:
            # each epoch's segmentation has its own lengths, hence its own batch count: Lightning reads
            # the count when it builds the train loader, so it must build it anew every epoch
            if self.trainer.reload_dataloaders_every_n_epochs != 1:
                log.info("subword sampling: the train loader is rebuilt every epoch (reload_dataloaders_every_n_epochs=1)")
            self.trainer.reload_dataloaders_every_n_epochs = 1
        for split in _STAGE_SPLITS.get(stage, ("train", "val", "test")):
            try:
                self._split(split)
            except FileNotFoundError:
                if stage is not None or split != "test":
                    raise  # only when describing everything is a withheld test split reported, not fatal

    def _store(self, split: str) -> token_store.TokenStore:
        """The split's token store: memory-mapped from the cache, or encoded (in worker processes) first."""
        name = f"{self.dataset}-{self.src_lang}-{self.tgt_lang}-{split}"
        return token_store.load_or_build(self.cache_dir, name, self._read_key(split),
                                         lambda stats: self._stream(split, stats), self.tokenizer,
                                         self.encode_workers)

    def _encode(self, split: str) -> EncodedSplit:
        """Open (or build) a split's token store, drop what cannot be batched, and log one line of statistics."""
        store = self._store(split)
        src_lens, tgt_lens = store.src.lengths, store.tgt.lengths
        too_long = (src_lens > self.max_len) | (tgt_lens + 1 > self.max_len)
        # train drops over-long pairs; val/test keep them so scores cover the whole split
        keep = np.flatnonzero((src_lens > 0) & ~(too_long if split == "train" else False))
        texts: tuple[list[str] | None, list[str] | None] = (None, None)
        if split != "train" or self.subword_alpha:  # val/test: the BLEU references; train: what sampling re-segments
            pairs = self.pairs(split)
            if len(pairs) != len(store):
                raise ValueError(f"the token cache {store.path} has {len(store)} pairs but {split} has {len(pairs)}; "
                                 f"delete it to rebuild")
            texts = ([pairs[i][0] for i in keep], [pairs[i][1] for i in keep])
        data = EncodedSplit(store.src.select(keep), store.tgt.select(keep), *texts,
                            empty_source=[self.tokenizer.sep_id])
        replayed = 0
        if split == "train" and self.replay:
            src_ids, tgt_ids = self._replayed(len(data))
            replayed = len(src_ids)
            data = EncodedSplit(token_store.ConcatColumn(data.src_ids, src_ids),
                                token_store.ConcatColumn(data.tgt_ids, tgt_ids), empty_source=[self.tokenizer.sep_id])
        longest = int(max(data.src_lens.max(initial=0), data.tgt_lens.max(initial=-1) + 1))  # + eos
        if split == "train" and longest > self.max_tokens:  # such a pair would be a batch alone, over the budget
            over = int(((data.src_lens > self.max_tokens) | (data.tgt_lens + 1 > self.max_tokens)).sum())
            raise ValueError(f"--data.max_tokens {self.max_tokens} is less than one pair: {over:,} of the "
                             f"{len(data):,} train pairs are longer (up to {longest} tokens), each would be a batch "
                             f"over the budget; raise --data.max_tokens to at least {longest} or lower --data.max_len")
        sampler = self._sampler(data, split)
        self._stats_sampler[split] = sampler
        kept_src, kept_tgt = data.src_lens, data.tgt_lens
        self.stats[split] = stats = {
            "pairs": len(data), "empty_dropped": store.stats.get("empty", 0),
            "empty_source_dropped": int((src_lens == 0).sum()),
            "over_max_len": int(too_long.sum()), "over_max_len_dropped": split == "train",
            "src_tokens": int(kept_src.sum()), "tgt_tokens": int(kept_tgt.sum()),
            "batches": len(sampler), "max_tokens": sampler.max_tokens, "padding": sampler.padding_fraction(0),
            **({"replayed_pairs": replayed} if replayed else {}),
        }
        long_note = "dropped" if split == "train" else "kept"
        log.info("%s %s->%s %s: %d pairs (%d longer than %d tokens %s), %d batches of <= %d tokens, padding %.1f%%",
                 self.dataset, self.src_lang, self.tgt_lang, split, len(data), stats["over_max_len"], self.max_len,
                 long_note, stats["batches"], sampler.max_tokens, 100 * stats["padding"])
        return data

    def _replayed(self, new_pairs: int) -> tuple[token_store.TokenColumn, token_store.TokenColumn]:
        """A fixed sample (seed) of the replayed dataset's train pairs, encoded with this tokenizer, so that they
        are `replay` of the training pairs: replay / (1 - replay) * new_pairs of them (at most all)."""
        dataset = str(self.hparams.replay_dataset)
        src_lang, tgt_lang = self.replay_source
        source = Seq2SeqDataModule(dataset, src_lang, tgt_lang, self.data_dir, cache_dir=self.cache_dir,
                                   max_len=self.max_len, context_turns=self.context_turns,
                                   encode_workers=self.encode_workers)
        source._tokenizer = self.tokenizer  # the same ids: the replayed pairs are encoded with this tokenizer
        store = source._store("train")
        src_lens, tgt_lens = store.src.lengths, store.tgt.lengths
        eligible = np.flatnonzero((src_lens > 0) & (src_lens <= self.max_len) & (tgt_lens + 1 <= self.max_len))
        wanted = min(len(eligible), round(self.replay / (1.0 - self.replay) * new_pairs))
        rows = np.sort(np.random.default_rng(self.seed).choice(eligible, wanted, replace=False))
        log.info("replay: %d pairs of %s %s->%s train (%.0f%% of the training pairs)", wanted, dataset, src_lang,
                 tgt_lang, 100 * wanted / max(1, wanted + new_pairs))
        return store.src.select(rows), store.tgt.select(rows)

    def _split(self, split: str) -> EncodedSplit:
        if split not in self.splits:
            self.splits[split] = self._encode(split)
        return self.splits[split]

    def _sampler(self, data: EncodedSplit, split: str, num_replicas: int = 1, rank: int = 0) -> TokenBudgetBatchSampler:
        train = split == "train"
        return TokenBudgetBatchSampler(data.src_lens, data.tgt_lens + 1,
                                       self.max_tokens if train else self.val_max_tokens, shuffle=train,
                                       seed=self.seed, num_replicas=num_replicas, rank=rank)

    def _fresh_sampler(self, split: str, num_replicas: int = 1, rank: int = 0) -> TokenBudgetBatchSampler:
        """A sampler no loader has used yet: the one built for the statistics the first time (packing a
        corpus of millions of pairs takes seconds), a new one after that or for another shard."""
        sampler = self._stats_sampler.pop(split, None) if num_replicas == 1 else None
        return sampler if sampler is not None else self._sampler(self._split(split), split, num_replicas, rank)

    def _loader(self, split: str, sampler: TokenBudgetBatchSampler, cls: type = DataLoader, **kwargs) -> DataLoader:
        return cls(self._split(split), batch_sampler=sampler, num_workers=self.num_workers,
                   collate_fn=partial(collate, pad_id=self.pad_id, bos_id=self.bos_id, eos_id=self.eos_id),
                   persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(), **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled token-budget batches, this rank's shard when a multi-device Trainer is attached."""
        num_replicas, rank = 1, 0
        if self.trainer is not None:
            num_replicas, rank = self.trainer.world_size, self.trainer.global_rank
            connector = getattr(self.trainer, "_accelerator_connector", None)
            if num_replicas > 1 and getattr(connector, "use_distributed_sampler", False):
                raise ValueError("Seq2SeqDataModule shards its token-budget batches across devices itself: "
                                 "set `trainer.use_distributed_sampler: false` (--trainer.use_distributed_sampler "
                                 "false) so Lightning does not replace its batch sampler")
        sampler = self._fresh_sampler("train", num_replicas, rank)
        self._train_sampler = sampler
        if self.subword_alpha and self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)  # the loader's length is that epoch's batch count
        self._apply_resume()
        batches = ContextDropoutBatches(sampler, self.context_dropout, self.seed) if self.context_dropout else sampler
        if self.subword_alpha:
            batches = SubwordSamplingBatches(batches, sampler, self.subword_sampling())
        return self._loader("train", batches, _ResumableLoader, datamodule=self)

    def subword_sampling(self) -> SubwordSampling:
        """The per-epoch sampled segmentations of the training split (subword_alpha > 0)."""
        if self._subword is None:
            train = self._split("train")
            self._subword = SubwordSampling(self.tokenizer, train.src_text, train.tgt_text, train.src_ids,
                                            train.tgt_ids, self.subword_alpha, self.subword_nbest_size, self.max_len)
        return self._subword

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self._fresh_sampler("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self._fresh_sampler("test"))

    # ---- resume --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What continues the train order after a restart: seed, epoch and batches done in that epoch.

        With a Trainer attached, `batches_done` is Lightning's count of train steps run this epoch,
        so a mid-epoch checkpoint resumes at the next unseen batch; without one it is the number
        of batches the train sampler has yielded.
        """
        sampler = self._train_sampler
        epoch = sampler.epoch if sampler else 0
        done = sampler.batches_yielded if sampler else 0
        if self.trainer is not None and sampler is not None:
            done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        train = self.splits.get("train")
        return {"seed": self.seed, "epoch": epoch, "batches_done": done,
                "train_pairs": len(train) if train is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the train order: the next iteration of the saved epoch skips the batches already done."""
        if state.get("seed") is not None and state["seed"] != self.seed:
            log.warning("resuming with the checkpoint's data seed %d instead of %d", state["seed"], self.seed)
            self.seed = state["seed"]
        self._resume = dict(state)
        if self._train_sampler is not None:
            self._apply_resume()

    def _apply_resume(self) -> None:
        state, sampler = self._resume, self._train_sampler
        if state is None or sampler is None:
            return
        if state.get("train_pairs") not in (None, len(self._split("train"))):
            log.warning("the training data changed since the checkpoint (%s pairs, now %d): starting the epoch "
                        "from its first batch", state["train_pairs"], len(self._split("train")))
        else:
            sampler.seed = state.get("seed", sampler.seed)
            sampler.set_epoch(state["epoch"])
            sampler.skip(state["epoch"], state["batches_done"])
        self._resume = None

    # ---- statistics ----------------------------------------------------------------------
    def padding_fraction(self, split: str = "train") -> float:
        """Fraction of pad positions in src + tgt over one epoch of `split` batches."""
        return self._sampler(self._split(split), split).padding_fraction(0)

    def describe(self) -> dict[str, Any]:
        """Pairs, dropped counts, batches per epoch and padding for every available split."""
        self.setup(None)
        return {"dataset": self.dataset, "src_lang": self.src_lang, "tgt_lang": self.tgt_lang,
                "data_path": str(self.data_path), "tokenizer": str(self.tokenizer_file),
                "src_vocab_size": self.src_vocab_size, "tgt_vocab_size": self.tgt_vocab_size,
                "max_len": self.max_len, "splits": {s: dict(self.stats[s]) for s in ("train", "val", "test")
                                                    if s in self.stats},
                "missing_splits": [s for s in ("train", "val", "test") if s not in self.stats]}


def stats_command(name: str, src_lang: str | None = None, tgt_lang: str | None = None, data_dir: str | None = None,
                  tokenizer_path: str | None = None, cache_dir: str = "data/cache", vocab_size: int = 8000,
                  max_tokens: int = 4096, max_len: int = 128, context_turns: int = DEFAULT_CONTEXT_TURNS, tokenizer_sample: int = 200_000,
                  encode_workers: int | None = None) -> None:
    """Pairs, dropped pairs, batches per epoch and padding of every split of dataset NAME.

    Args:
        name: a registered dataset (see `translator data list`).
        src_lang: source language (default: the dataset's default pair).
        tgt_lang: target language.
        data_dir: folder holding NAME/; default $TRANSLATOR_DATA_DIR, then data/.
        tokenizer_path: reuse this SentencePiece model instead of training (or loading a cached) one.
        cache_dir: tokenizer and token-store cache.
        vocab_size: vocabulary size of the tokenizer to train.
        max_tokens: token budget per batch.
        max_len: longest train pair kept, in tokens.
        context_turns: dailydialog: previous turns in the context.
        tokenizer_sample: train the tokenizer on at most this many pairs (a seeded sample).
        encode_workers: processes encoding the splits the first time (default: one per CPU, at most 8).
    """
    dm = Seq2SeqDataModule(name, src_lang, tgt_lang, data_dir, tokenizer_path, cache_dir, vocab_size,
                           max_tokens=max_tokens, max_len=max_len, context_turns=context_turns,
                           tokenizer_sample=tokenizer_sample, encode_workers=encode_workers)
    info = dm.describe()
    print(f"{info['dataset']} {info['src_lang']}->{info['tgt_lang']} from {info['data_path']}\n"
          f"tokenizer: {info['tokenizer']} ({info['src_vocab_size']}/{info['tgt_vocab_size']} pieces)")
    for split, s in info["splits"].items():
        print(f"  {split:5s} {s['pairs']:7d} pairs  {s['batches']:5d} batches of <= {s['max_tokens']} tokens  "
              f"padding {100 * s['padding']:4.1f}%  tokens src {s['src_tokens']} tgt {s['tgt_tokens']}  "
              f"dropped: {s['empty_dropped']} empty, {s['empty_source_dropped']} empty after tokenizing, "
              f"{s['over_max_len']} over {info['max_len']} tokens ({'dropped' if s['over_max_len_dropped'] else 'kept'})")
    for split in info["missing_splits"]:
        print(f"  {split:5s} not available in this copy")
