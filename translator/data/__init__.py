"""Corpora, dataset registry, token-budget batching and the Lightning DataModule.

    readers.py     corpus files -> (source, target) text pairs
    registry.py    dataset names -> where they live, where they come from, their splits
    sampler.py     token-budget batches with length bucketing, DDP shards, resume
    token_store.py encoded splits on disk (flat ids + offsets), memory-mapped; parallel encoding
    datamodule.py  Seq2SeqDataModule and collate() (imports Lightning: loaded only when asked for,
                   so readers and the registry serve inference without it)
"""
from typing import Any

from translator.data.readers import (detokenize, dialogue_pairs, read_csv_columns, read_dailydialog, read_lines,
                                     read_parallel, read_tsv)
from translator.data.registry import (DATASETS, ENV_VAR, SPLIT_SEED, SPLITS, DatasetSpec, DownloadError, Source,
                                      data_dirs, dataset_path, download, download_command, find_dataset, get_spec,
                                      heldout_split, list_command, list_datasets, load_pairs, normalize_split,
                                      resolve_languages)
from translator.data.sampler import TokenBudgetBatchSampler

__all__ = [
    "DATASETS", "ENV_VAR", "SPLIT_SEED", "SPLITS", "DatasetSpec", "DownloadError", "EncodedSplit",
    "Seq2SeqDataModule", "Source", "TokenBudgetBatchSampler", "collate", "data_dirs", "dataset_path",
    "detokenize", "dialogue_pairs", "download", "find_dataset", "get_spec", "heldout_split", "list_datasets",
    "load_pairs", "normalize_split", "read_csv_columns", "read_dailydialog", "read_lines", "read_parallel",
    "read_tsv", "resolve_languages", "download_command", "list_command", "stats_command",
]


_DATAMODULE = ("EncodedSplit", "Seq2SeqDataModule", "collate", "stats_command")


def __getattr__(name: str) -> Any:
    # The DataModule needs Lightning; inference reads the registry only and must not pay for it.
    if name in _DATAMODULE:
        from translator.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
