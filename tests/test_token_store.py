"""Token store: the cache of encoded splits (reuse, invalidation, damage, full disk, dtype), streaming
readers, the tokenizer's seeded sample, and batches identical to the old in-memory pipeline."""
from __future__ import annotations

import errno
import logging
import os
import pickle
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from translator.data import ENV_VAR, TokenBudgetBatchSampler, load_pairs, read_lines
from translator.data import token_store
from translator.data.readers import iter_lines, iter_parallel
from translator.data.token_store import TokenColumn, build_store, seeded_sample, token_dtype
from translator.tokenizer import Tokenizer
from translator.training.datamodule import Seq2SeqDataModule, collate

WORDS = "ein mann eine frau der hund läuft über die straße mit einem roten ball zwei kinder spielen".split()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)


def sentences(n: int, seed: int, longest: int = 9) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, longest))) for _ in range(n)]


def write_corpus(base: Path, n_train: int = 150) -> Path:
    """`base/multi30k/` with a few empty lines (dropped by the reader, counted) among the pairs."""
    folder = base / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n, seed in (("train", n_train, 1), ("val", 14, 2), ("test_2016_flickr", 10, 3)):
        de = sentences(n, seed)
        en = [s.upper() for s in de]
        de[3] = ""  # an empty source: the pair is dropped and counted
        for lang, lines in (("de", de), ("en", en), ("fr", de)):
            (folder / f"{stem}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return base


def make_dm(base: Path, **kwargs) -> Seq2SeqDataModule:
    options = dict(data_dir=str(base), cache_dir=str(base / "cache"), vocab_size=400, max_tokens=80, max_len=8)
    return Seq2SeqDataModule(**{**options, **kwargs})


def stores(base: Path) -> list[Path]:
    return sorted(p for p in (base / "cache" / "tokens").iterdir() if not p.name.startswith(".tmp"))


def old_pipeline_batches(dm: Seq2SeqDataModule, split: str, epoch: int) -> list[dict]:
    """Batches built the way the pipeline did before the token store: everything in Python lists."""
    pairs = load_pairs(dm.dataset, split, dm.src_lang, dm.tgt_lang, dm.data_dir)
    src_ids = dm.tokenizer.encode_src([s for s, _ in pairs])
    tgt_ids = dm.tokenizer.encode_tgt([t for _, t in pairs])
    too_long = [len(s) > dm.max_len or len(t) + 1 > dm.max_len for s, t in zip(src_ids, tgt_ids)]
    keep = [i for i, s in enumerate(src_ids) if s and not (split == "train" and too_long[i])]
    examples = [{"index": k, "src": src_ids[i], "tgt": tgt_ids[i], "src_text": pairs[i][0], "tgt_text": pairs[i][1]}
                for k, i in enumerate(keep)]
    train = split == "train"
    sampler = TokenBudgetBatchSampler([len(e["src"]) for e in examples], [len(e["tgt"]) + 1 for e in examples],
                                      dm.max_tokens if train else dm.val_max_tokens, shuffle=train, seed=dm.seed)
    sampler.set_epoch(epoch)
    return [collate([examples[i] for i in batch], dm.pad_id, dm.bos_id, dm.eos_id) for batch in sampler]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_identical_to_the_old_in_memory_pipeline(tmp_path, monkeypatch, workers):
    """Same seed, same batches, batch by batch, for two epochs (and val), whether encoded here or in workers."""
    monkeypatch.setattr(token_store, "CHUNK_PAIRS", 16)  # many chunks, so the worker path really runs
    write_corpus(tmp_path, n_train=300)
    dm = make_dm(tmp_path, encode_workers=workers)
    dm.setup("fit")
    loader = dm.train_dataloader()
    for epoch in (0, 1):
        loader.batch_sampler.set_epoch(epoch)
        new, old = list(loader), old_pipeline_batches(dm, "train", epoch)
        assert len(new) == len(old) > 5
        for a, b in zip(new, old):
            for key in ("src", "src_mask", "tgt_in", "tgt_out", "index"):
                assert torch.equal(a[key], b[key]), key
    for a, b in zip(dm.val_dataloader(), old_pipeline_batches(dm, "val", 0)):
        assert all(torch.equal(a[k], b[k]) for k in ("src", "tgt_in", "index")) and a["tgt_text"] == b["tgt_text"]
    assert dm.stats["train"]["empty_dropped"] == 1 and dm.stats["train"]["over_max_len"] > 0


def test_cache_reused_and_invalidated_by_files_and_tokenizer(tmp_path, monkeypatch, caplog):
    write_corpus(tmp_path)
    first = make_dm(tmp_path)
    first.setup("fit")
    assert len(stores(tmp_path)) == 2  # train + val
    real_build = token_store.build_store
    builds = []
    monkeypatch.setattr(token_store, "build_store", lambda *a, **k: builds.append(a[0]) or real_build(*a, **k))

    again = make_dm(tmp_path, max_len=5)  # max_len filters on opening: not part of the key
    again.setup("fit")
    assert builds == [] and isinstance(again.splits["train"].src_ids.tokens, np.memmap)
    assert again.stats["train"]["pairs"] < first.stats["train"]["pairs"]

    other = tmp_path / "other.model"  # another tokenizer: every split is encoded again
    Tokenizer.train(sentences(200, 9), sentences(200, 9), vocab_size=300).save(other)
    make_dm(tmp_path, tokenizer_path=str(other)).setup("fit")
    assert len(builds) == 2

    train_de = tmp_path / "multi30k" / "train.de"  # an edited corpus file: new tokenizer, new train store
    train_de.write_text(train_de.read_text(encoding="utf-8").replace("hund", "katze"), encoding="utf-8")
    edited = make_dm(tmp_path)
    edited.setup("fit")
    assert edited.tokenizer_file != first.tokenizer_file and len(builds) == 4
    assert any("katze" in edited.tokenizer.src.id_to_piece(i) for i in range(edited.src_vocab_size))


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest", "bad_manifest"])
def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    write_corpus(tmp_path)
    dm = make_dm(tmp_path)
    dm.setup("fit")
    expected = [b["src"].tolist() for b in dm.train_dataloader()]
    train = next(p for p in stores(tmp_path) if "-train-" in p.name)
    tokens = train / "src.tokens"
    if damage == "truncate":
        os.truncate(tokens, tokens.stat().st_size - 2)
    elif damage == "flip":
        data = bytearray(tokens.read_bytes())
        data[len(data) // 2] ^= 0xFF
        tokens.write_bytes(bytes(data))
    elif damage == "no_manifest":
        (train / "manifest.json").unlink()
    else:
        (train / "manifest.json").write_text("{not json")
    caplog.set_level(logging.WARNING, "translator.data")
    again = make_dm(tmp_path)
    again.setup("fit")
    assert any("cannot be used" in r.message and "rebuilding" in r.message for r in caplog.records)
    assert [b["src"].tolist() for b in again.train_dataloader()] == expected
    assert (train / "manifest.json").is_file()


def test_a_full_disk_leaves_no_cache_that_looks_valid(tmp_path, monkeypatch):
    write_corpus(tmp_path)
    monkeypatch.setattr(token_store, "CHUNK_PAIRS", 16)
    calls = []

    def add(self, *arrays):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, *arrays)

    real_add = token_store._Writer.add
    monkeypatch.setattr(token_store._Writer, "add", add)
    with pytest.raises(OSError, match="could not write the token cache .*No space left on device"):
        make_dm(tmp_path, encode_workers=0).setup("fit")
    leftovers = list((tmp_path / "cache" / "tokens").iterdir())
    assert leftovers == []  # neither a store nor its temporary folder
    monkeypatch.setattr(token_store._Writer, "add", real_add)
    dm = make_dm(tmp_path, encode_workers=0)
    dm.setup("fit")
    assert len(stores(tmp_path)) == 2 and len(dm.train_dataloader()) > 0


class _BigVocab:
    """A stand-in tokenizer with 70,000 ids: ids above 65,535 need int32."""

    src_vocab_size = tgt_vocab_size = 70_000

    def encode_src(self, texts, num_threads=None):
        return [[69_999, len(t)] for t in texts]

    def encode_tgt(self, texts, num_threads=None):
        return [[65_536 + len(t)] * 3 for t in texts]


def test_uint16_when_the_vocabulary_fits_else_int32(tmp_path):
    assert token_dtype(8000) == np.uint16 and token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.int32
    pairs = [(f"s{'x' * i}", f"t{i}") for i in range(40)]
    store = build_store(tmp_path / "big", {"k": 1}, iter(pairs), _BigVocab(), workers=0)
    assert store.src.tokens.dtype == np.int32 and (tmp_path / "big" / "src.tokens").stat().st_size == 4 * 80
    assert store.src[5] == [69_999, 6] and store.tgt[39] == [65_539] * 3
    write_corpus(tmp_path)
    dm = make_dm(tmp_path)
    dm.setup("fit")
    column = dm.splits["train"].src_ids
    assert column.tokens.dtype == np.uint16
    assert (Path(column.tokens.filename).stat().st_size == 2 * len(column.tokens))


def test_ranks_map_the_same_store_and_shard_it(tmp_path, monkeypatch):
    """What every DDP rank does: map the store rank 0 built (prepare_data), never encode again."""
    write_corpus(tmp_path)
    builder = make_dm(tmp_path)
    builder.trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"), world_size=1, global_rank=0)
    builder.prepare_data()  # rank 0: tokenizer + train and val stores
    assert len(stores(tmp_path)) == 2
    monkeypatch.setattr(token_store, "build_store", lambda *a, **k: pytest.fail("a rank encoded again"))
    seen = []
    for rank in (0, 1):
        dm = make_dm(tmp_path)
        connector = SimpleNamespace(use_distributed_sampler=False)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, _accelerator_connector=connector)
        dm.setup("fit")
        seen.append([i for b in dm.train_dataloader() for i in b["index"].tolist()])
        column = dm.splits["train"].src_ids
        assert isinstance(column.tokens, np.memmap) and Path(column.tokens.filename).parent in stores(tmp_path)
        # DataLoader workers and spawned processes get the file names, not a copy of the tokens
        sent = pickle.dumps(column)
        assert len(sent) < column.tokens.nbytes + 2 * 8 * len(column) and list(pickle.loads(sent)) == list(column)
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(dm.stats["train"]["pairs"]))


def test_token_column_matches_lists_and_selects_rows():
    ids = [[1, 2, 3], [], [4], [5, 6]]
    column = TokenColumn.from_lists(ids)
    assert list(column) == ids and column.lengths.tolist() == [3, 0, 1, 2]
    picked = column.select(np.array([3, 0]))
    assert list(picked) == [[5, 6], [1, 2, 3]] and picked.lengths.tolist() == [2, 3]
    assert list(picked.select(np.array([1]))) == [[1, 2, 3]]


def test_streaming_readers_match_the_whole_file_readers(tmp_path):
    path = tmp_path / "f.txt"
    for content in (b"", b"a", b"\xef\xbb\xbfone\r\ntwo\n\nthree", "é\n".encode() * 3000):
        path.write_bytes(content)
        for block in (1, 5, 1 << 20):
            assert list(iter_lines(path, block)) == read_lines(path)
    path.write_bytes(b"ok\nok\n\xff\n")
    with pytest.raises(ValueError, match=r"f.txt:3: invalid UTF-8"):
        list(iter_lines(path, 4))
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("x\n \ny\n")
    b.write_text("X\nZ\nY\n")
    stats = {}
    assert list(iter_parallel(a, b, stats=stats)) == [("x", "X"), ("y", "Y")] and stats == {"empty": 1}
    b.write_text("X\n")
    with pytest.raises(ValueError, match="a has 3 lines, .*b has 1 lines"):
        list(iter_parallel(a, b))


def test_seeded_sample_is_uniform_reproducible_and_in_order(tmp_path, monkeypatch):
    assert seeded_sample(range(5), 10, 0) == [0, 1, 2, 3, 4]
    sample = seeded_sample(range(1000), 50, 3)
    assert sample == seeded_sample(range(1000), 50, 3) != seeded_sample(range(1000), 50, 4)
    assert len(set(sample)) == 50 and sample == sorted(sample)
    counts = np.zeros(20)
    for seed in range(1000):
        counts[seeded_sample(range(20), 5, seed)] += 1
    assert counts.min() > 180 and counts.max() < 320  # each item 250 times in expectation

    write_corpus(tmp_path, n_train=150)
    seen = []
    real = Tokenizer.train.__func__
    monkeypatch.setattr(Tokenizer, "train", classmethod(lambda cls, src, tgt, *a, **k: seen.append(len(src))
                                                        or real(cls, src, tgt, *a, **k)))
    make_dm(tmp_path, tokenizer_sample=40).prepare_data()
    assert 0 < seen[0] <= 40
