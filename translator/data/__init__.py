"""Corpora, dataset registry, token-budget batching: text pairs and token ids, nothing of Lightning.

    readers.py     corpus files -> (source, target) text pairs
    registry.py    dataset names -> where they live, where they come from, their splits
    sampler.py     token-budget batches with length bucketing, DDP shards, resume
    token_store.py encoded splits on disk (flat ids + offsets), memory-mapped; parallel encoding
    tokenizer_cache.py trained tokenizers cached on disk, keyed by the corpus files and the tokenizer settings
    subword.py     subword regularization: a sampled segmentation per epoch

The Lightning DataModule that assembles them for training is translator/training/datamodule.py.
"""
from translator.data.readers import (detokenize, dialogue_pairs, read_csv_columns, read_dailydialog, read_lines,
                                     read_parallel, read_tsv)
from translator.data.registry import (DATASETS, ENV_VAR, SPLIT_SEED, SPLITS, DatasetSpec, DownloadError, Source,
                                      data_dirs, dataset_path, download, download_command, find_dataset, get_spec,
                                      heldout_split, list_command, list_datasets, load_pairs, normalize_split,
                                      resolve_languages)
from translator.data.sampler import TokenBudgetBatchSampler

__all__ = [
    "DATASETS", "ENV_VAR", "SPLIT_SEED", "SPLITS", "DatasetSpec", "DownloadError", "Source",
    "TokenBudgetBatchSampler", "data_dirs", "dataset_path",
    "detokenize", "dialogue_pairs", "download", "find_dataset", "get_spec", "heldout_split", "list_datasets",
    "load_pairs", "normalize_split", "read_csv_columns", "read_dailydialog", "read_lines", "read_parallel",
    "read_tsv", "resolve_languages", "download_command", "list_command",
]

