"""Trained tokenizers cached on disk: one SentencePiece model per corpus and tokenizer settings.

A cache entry is `<cache_dir>/<dataset>-<src>-<tgt>-<type><vocab>-<digest>.model` (plus `.tgt` for a
separate target model). The digest covers the dataset, the language pair, every tokenizer setting and
the training split's read key (its files' path, size and mtime, and how they are read), so an edited
corpus file or another vocabulary size gets a new model, and the same corpus and settings find the
model trained before. The tokenizer is trained on a seeded sample of the training pairs (fixed seed:
the model and its cache entry do not depend on the training seed).

A tokenizer given by path (a SentencePiece model, or a checkpoint's, which artifacts/ reads) is not
cached here: translator/training/datamodule.py chooses between the two.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from translator.data.readers import Pair
from translator.data.registry import SPLIT_SEED
from translator.data.token_store import seeded_sample
from translator.tokenizer import SEP_TOKEN, Tokenizer

log = logging.getLogger("translator.data")

TOKENIZER_TYPES = ("unigram", "bpe")


@dataclass(frozen=True)
class TokenizerSettings:
    """How a tokenizer is trained (the DataModule's `vocab_size`, `tokenizer_type`, `joint_vocab`,
    `character_coverage` and `tokenizer_sample`); every field is part of the cache key."""

    vocab_size: int = 8000
    tokenizer_type: str = "unigram"
    joint_vocab: bool = True
    character_coverage: float = 1.0
    sample: int = 200_000


def cache_file(cache_dir: str | Path, dataset: str, src_lang: str, tgt_lang: str, settings: TokenizerSettings,
               train_key: dict[str, Any]) -> Path:
    """Where the tokenizer of this corpus (`train_key`: the training split's read key) and settings is cached."""
    options = {"dataset": dataset, "src": src_lang, "tgt": tgt_lang, "vocab": settings.vocab_size,
               "type": settings.tokenizer_type, "joint": settings.joint_vocab,
               "coverage": settings.character_coverage, "sample": settings.sample,
               "train": train_key}  # edited files: a new model
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    name = f"{dataset}-{src_lang}-{tgt_lang}-{settings.tokenizer_type}{settings.vocab_size}"
    return Path(cache_dir) / f"{name}-{digest.hexdigest()[:12]}.model"


def is_cached(path: Path, joint_vocab: bool) -> bool:
    """Whether the cache entry at `path` is complete: a separate target model is written last, so its
    presence means the entry is whole."""
    return path.is_file() and (joint_vocab or Path(f"{path}.tgt").is_file())


def training_text(pairs: Sequence[Pair]) -> tuple[list[str], list[str]]:
    """Source and target sentences to train on: every dialogue turn once (contexts repeat turns), so the
    vocabulary follows the text, not the windowing."""
    src = list(dict.fromkeys(x for s, _ in pairs for x in s.split(f" {SEP_TOKEN} ")))
    tgt = list(dict.fromkeys(x for _, t in pairs for x in t.split(f" {SEP_TOKEN} ")))
    return src, tgt


def load_or_train(path: Path, settings: TokenizerSettings, train_pairs: Callable[[], Iterable[Pair]]) -> Tokenizer:
    """The tokenizer cached at `path`, or one trained on a seeded sample of `train_pairs()` (a stream of the
    training split, read only when no complete entry exists) and saved there."""
    if is_cached(path, settings.joint_vocab):
        return Tokenizer.load(path)
    start = time.perf_counter()
    # a seeded sample of the pairs (all of them when fewer), read as a stream
    src, tgt = training_text(seeded_sample(train_pairs(), settings.sample, SPLIT_SEED))
    tokenizer = Tokenizer.train(src, tgt, settings.vocab_size, settings.tokenizer_type,
                                settings.character_coverage, joint=settings.joint_vocab)
    tokenizer.save(path)  # atomic: concurrent processes at worst train the same model twice
    log.info("trained a %s tokenizer (%d/%d pieces) in %.1fs -> %s", settings.tokenizer_type,
             tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, time.perf_counter() - start, path)
    return tokenizer


def warn_if_smaller(tokenizer: Tokenizer, vocab_size: int) -> None:
    """Log when SentencePiece (hard_vocab_limit=False) made fewer pieces than `vocab_size` asked for."""
    built = max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    if built < vocab_size:
        log.warning("--data.vocab_size %d is more than this corpus gives: SentencePiece made %s pieces "
                    "(%d/%d), which the model is built with; --data.vocab_size %d gives the same tokenizer "
                    "under its own name", vocab_size, f"{built:,}", tokenizer.src_vocab_size,
                    tokenizer.tgt_vocab_size, built)
