"""Corpus readers, dataset registry, token-budget sampler and the DataModule, on tiny corpora in tmp_path."""
from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import random
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from translator.data import (DATASETS, ENV_VAR, DownloadError, Source, TokenBudgetBatchSampler, detokenize, download,
                             find_dataset, heldout_split, list_datasets, load_pairs, read_csv_columns, read_dailydialog,
                             read_parallel, read_tsv)
from translator.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from translator.training.datamodule import Seq2SeqDataModule, collate

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = "ein mann eine frau der hund läuft über die straße mit einem roten ball zwei kinder spielen".split()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test sees the caller's data: no TRANSLATOR_DATA_DIR, and data/ is resolved inside tmp_path."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)


def sentences(n: int, seed: int = 0, longest: int = 8) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, longest))) for _ in range(n)]


def write_multi30k(base: Path, n_train: int = 120) -> Path:
    """`base/multi30k/` laid out like ../shared/data/multi30k (en = German text upper-cased)."""
    folder = base / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n, seed in (("train", n_train, 1), ("val", 12, 2), ("test_2016_flickr", 10, 3)):
        de = sentences(n, seed)
        for lang, lines in (("de", de), ("en", [s.upper() for s in de]), ("fr", de)):
            (folder / f"{stem}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return base


# ---- readers --------------------------------------------------------------------------------
def test_read_parallel_and_length_mismatch(tmp_path):
    (tmp_path / "a.de").write_text("Hallo Welt\nZwei Hunde\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("Hello world\r\nTwo dogs", encoding="utf-8")  # CRLF, no final newline
    assert read_parallel(tmp_path / "a.de", tmp_path / "a.en") == [("Hallo Welt", "Hello world"),
                                                                    ("Zwei Hunde", "Two dogs")]
    (tmp_path / "b.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read_parallel(tmp_path / "a.de", tmp_path / "b.en")
    assert all(s in str(err.value) for s in ("a.de", "b.en", "2 lines", "3 lines"))


def test_read_tsv_directions_and_bad_line(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text("Go.\tVa !\nRun!\tCours !\tCC-BY 2.0 (France) Attribution\n", encoding="utf-8")
    assert read_tsv(path) == [("Go.", "Va !"), ("Run!", "Cours !")]
    assert read_tsv(path, reverse=True) == [("Va !", "Go."), ("Cours !", "Run!")]
    path.write_text("Go.\tVa !\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"fra\.txt:2: expected 2 tab-separated fields"):
        read_tsv(path)


def test_read_csv_columns_crlf_and_missing_column(tmp_path):
    path = tmp_path / "ChatbotData.csv"
    path.write_bytes('Q,A,label\r\n안녕,"반가워요, 정말요.",0\r\n배고파,밥 먹어요 🍚, 1'.encode())
    assert read_csv_columns(path, "Q", "A") == [("안녕", "반가워요, 정말요."), ("배고파", "밥 먹어요 🍚")]
    with pytest.raises(ValueError) as err:
        read_csv_columns(path, "Q", "Answer")
    assert all(s in str(err.value) for s in ("ChatbotData.csv", "'Answer'", "['Q', 'A', 'label']"))


def test_dailydialog_detokenized_context_pairs(tmp_path):
    path = tmp_path / "dialogues_train.txt"
    path.write_text("Say , Jim , how about a beer ? __eou__ I don ' t know . __eou__ Let ’ s go ! __eou__ "
                    "OK . __eou__\n", encoding="utf-8")
    pairs = read_dailydialog(path, context_turns=2)
    assert pairs == [("Say, Jim, how about a beer?", "I don't know."),
                     ("Say, Jim, how about a beer? <sep> I don't know.", "Let's go!"),
                     ("I don't know. <sep> Let's go!", "OK.")]
    assert [s for s, _ in read_dailydialog(path, context_turns=1)][-1] == "Let's go!"
    assert detokenize("hello , world .") == "hello, world."
    assert detokenize("It costs $ 5 ( about 3 % ) .") == "It costs $5 (about 3%)."


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "train.de"
    path.write_bytes("eins\nzwei\n".encode() + b"dr\xffei\nvier\n")
    (tmp_path / "train.en").write_text("one\ntwo\nthree\nfour\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.de:3: invalid UTF-8"):
        read_parallel(path, tmp_path / "train.en")
    csv_path = tmp_path / "data.csv"
    csv_path.write_bytes(b"Q,A\r\nok,fine\r\nbad,\xc3(\r\n")
    with pytest.raises(ValueError, match=r"data\.csv:3: invalid UTF-8"):
        read_csv_columns(csv_path, "Q", "A")


def test_empty_pairs_dropped_and_counted_in_one_log_line(tmp_path, caplog):
    (tmp_path / "x.de").write_text("eins\n   \nzwei\ndrei\n\n", encoding="utf-8")
    (tmp_path / "x.en").write_text("one\ntwo\n\t\nthree\nfive\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="translator.data"):
        pairs = read_parallel(tmp_path / "x.de", tmp_path / "x.en")
    assert pairs == [("eins", "one"), ("drei", "three")]
    records = [r for r in caplog.records if r.name == "translator.data"]
    assert len(records) == 1 and "dropped 3 of 5 pairs" in records[0].getMessage()


# ---- registry -------------------------------------------------------------------------------
def test_unknown_dataset_and_unsupported_pair():
    with pytest.raises(ValueError, match="known datasets: multi30k, tatoeba-eng-fra, chatbot-ko, dailydialog"):
        load_pairs("wmt14", "train")
    with pytest.raises(ValueError, match=r"does not support en->ko; supported: en->fr, fr->en"):
        load_pairs("tatoeba-eng-fra", "train", "en", "ko")
    with pytest.raises(ValueError, match="unknown split"):
        load_pairs("multi30k", "dev2")


def test_data_not_found_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    with pytest.raises(FileNotFoundError) as err:
        find_dataset("multi30k", "train", data_dir=tmp_path / "explicit")
    message = str(err.value)
    for expected in ("explicit/multi30k", "from_env/multi30k", str(tmp_path / "data" / "multi30k"), "train.de",
                     "--data.data_dir", ENV_VAR, "translator data download multi30k"):
        assert expected in message


def test_registry_finds_multi30k_by_argument_env_and_default(tmp_path, monkeypatch):
    write_multi30k(tmp_path / "shared")
    pairs = load_pairs("multi30k", "train", data_dir=tmp_path / "shared")
    assert len(pairs) == 120 and pairs[0][1] == pairs[0][0].upper()  # default direction de -> en
    assert load_pairs("multi30k", "test", "en", "fr", data_dir=tmp_path / "shared")[0][1].islower()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "shared"))
    assert find_dataset("multi30k", "val") == tmp_path / "shared" / "multi30k"
    assert len(load_pairs("multi30k", "validation")) == 12
    monkeypatch.delenv(ENV_VAR)
    write_multi30k(tmp_path / "data")
    assert find_dataset("multi30k").resolve() == (tmp_path / "data" / "multi30k").resolve()
    found = {row["name"]: row["found"] for row in list_datasets()}
    assert found["multi30k"] and found["chatbot-ko"] is None


def test_dailydialog_missing_test_split_says_so(tmp_path):
    folder = tmp_path / "dailydialog" / "train"
    folder.mkdir(parents=True)
    (folder / "dialogues_train.txt").write_text("Hi . __eou__ Hello ! __eou__\n", encoding="utf-8")
    assert load_pairs("dailydialog", "train", data_dir=tmp_path) == [("Hi.", "Hello!")]
    with pytest.raises(FileNotFoundError, match="no test split.*val split"):
        load_pairs("dailydialog", "test", data_dir=tmp_path)


def test_tatoeba_heldout_split_is_seeded_grouped_and_direction_independent(tmp_path):
    folder = tmp_path / "tatoeba-eng-fra"
    folder.mkdir()
    lines = [f"sentence {i // 3}.\tphrase {i}." for i in range(600)]  # 3 French lines per English sentence
    (folder / "fra.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = {s: load_pairs("tatoeba-eng-fra", s, data_dir=tmp_path) for s in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == 600 and len(splits["val"]) >= 60 and len(splits["test"]) >= 60
    english = {s: {en for en, _ in pairs} for s, pairs in splits.items()}
    assert not english["train"] & english["val"] and not english["train"] & english["test"]
    assert not english["val"] & english["test"]
    assert load_pairs("tatoeba-eng-fra", "test", "fr", "en", data_dir=tmp_path) == [(f, e) for e, f in splits["test"]]
    pairs = [(f"s{i}", f"t{i}") for i in range(100)]
    assert heldout_split(pairs, 5, 5, seed=1) == heldout_split(pairs, 5, 5, seed=1) != heldout_split(pairs, 5, 5, 2)


def test_chatbot_ko_reads_q_to_a(tmp_path):
    folder = tmp_path / "chatbot-ko"
    folder.mkdir()
    rows = "\r\n".join(f"질문 {i},대답 {i},{i % 3}" for i in range(50))
    (folder / "ChatbotData.csv").write_bytes(f"Q,A,label\r\n{rows}".encode())
    pairs = [p for s in ("train", "val", "test") for p in load_pairs("chatbot-ko", s, data_dir=tmp_path)]
    assert sorted(pairs) == sorted((f"질문 {i}", f"대답 {i}") for i in range(50))


def test_download_unreachable_url_fails_clearly(tmp_path, monkeypatch):
    spec = dataclasses.replace(DATASETS["chatbot-ko"],
                               sources=(Source("http://127.0.0.1:9/ChatbotData.csv", "file", "ChatbotData.csv"),))
    monkeypatch.setitem(DATASETS, "chatbot-ko", spec)
    with pytest.raises(DownloadError) as err:
        download("chatbot-ko", tmp_path, timeout=5)
    assert "http://127.0.0.1:9/ChatbotData.csv" in str(err.value) and "TRANSLATOR_DATA_DIR" in str(err.value)
    assert not (tmp_path / "chatbot-ko").exists()


def test_download_gz_and_nested_zip_from_file_urls(tmp_path, monkeypatch):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    sources = []
    for stem in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "de", "fr"):
            (upstream / f"{stem}.{lang}.gz").write_bytes(gzip.compress(f"{stem} {lang}\n".encode()))
            sources.append(Source((upstream / f"{stem}.{lang}.gz").as_uri(), "gz", f"{stem}.{lang}"))
    monkeypatch.setitem(DATASETS, "multi30k", dataclasses.replace(DATASETS["multi30k"], sources=tuple(sources)))
    assert download("multi30k", tmp_path / "data") == tmp_path / "data" / "multi30k"
    test_pairs = load_pairs("multi30k", "test", data_dir=tmp_path / "data")
    assert test_pairs == [("test_2016_flickr de", "test_2016_flickr en")]

    outer = io.BytesIO()  # DailyDialog ships one zip holding one zip per split
    with zipfile.ZipFile(outer, "w") as archive:
        for split in ("train", "validation", "test"):
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as z:
                z.writestr(f"{split}/dialogues_{split}.txt", "Hi . __eou__ Hello ! __eou__\n")
            archive.writestr(f"ijcnlp_dailydialog/{split}.zip", inner.getvalue())
    (upstream / "dd.zip").write_bytes(outer.getvalue())
    spec = DATASETS["dailydialog"]
    source = dataclasses.replace(spec.sources[0], url=(upstream / "dd.zip").as_uri())
    monkeypatch.setitem(DATASETS, "dailydialog", dataclasses.replace(spec, sources=(source,)))
    download("dailydialog", tmp_path / "data")
    assert load_pairs("dailydialog", "test", data_dir=tmp_path / "data") == [("Hi.", "Hello!")]


# ---- sampler and collate --------------------------------------------------------------------
def random_lengths(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    src = [rng.randint(1, 40) for _ in range(n)]
    return src, [max(2, s + rng.randint(-5, 8)) for s in src]


def test_sampler_budget_coverage_and_epoch_order():
    src, tgt = random_lengths(1000)
    sampler = TokenBudgetBatchSampler(src, tgt, max_tokens=300, seed=7)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)  # constant across epochs: Lightning reads len() once
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert all(len(b) * max(max(src[i] for i in b), max(tgt[i] for i in b)) <= 300 for b in batches)
        orders.append(batches)
    assert orders[0] == orders[2] and orders[0] != orders[1]
    assert list(TokenBudgetBatchSampler(src, tgt, 300, seed=7)) == orders[0]
    assert list(TokenBudgetBatchSampler(src, tgt, 300, seed=8)) != orders[0]
    assert 0 < sampler.padding_fraction() < 0.2


def test_sampler_unshuffled_and_overlong_example():
    sampler = TokenBudgetBatchSampler([3, 50, 4, 3], [3, 5, 4, 2], max_tokens=20, shuffle=False)
    first = list(sampler)
    sampler.set_epoch(3)
    assert list(sampler) == first and [1] in first  # the 50-token example is a batch of its own


@pytest.mark.parametrize("replicas", [2, 3])
def test_sampler_ddp_shards_disjoint_complete_equal(replicas):
    src, tgt = random_lengths(257, seed=3)
    shards = [list(TokenBudgetBatchSampler(src, tgt, 400, seed=1, num_replicas=replicas, rank=r))
              for r in range(replicas)]
    assert len({len(s) for s in shards}) == 1
    assert len(TokenBudgetBatchSampler(src, tgt, 400, num_replicas=replicas, rank=0)) == len(shards[0])
    assert sorted(i for s in shards for b in s for i in b) == list(range(257))
    tiny = [list(TokenBudgetBatchSampler([1], [2], 400, num_replicas=2, rank=r)) for r in range(2)]
    assert tiny == [[[0]], [[0]]]  # fewer examples than ranks: the batch is repeated, never an empty rank


def test_sampler_skip_resumes_mid_epoch():
    src, tgt = random_lengths(300, seed=4)
    sampler = TokenBudgetBatchSampler(src, tgt, 200, seed=2)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.skip(1, 5)
    assert list(sampler) == full[5:] and sampler.batches_yielded == len(full)
    assert list(sampler) == full  # the skip applies once


def test_collate_shapes_and_special_tokens():
    examples = [{"index": 4, "src": [7, 8, 9], "tgt": [5], "src_text": "a b c", "tgt_text": "x"},
                {"index": 1, "src": [6], "tgt": [10, 11, 12], "src_text": "d", "tgt_text": "y z w"}]
    batch = collate(examples, PAD_ID, BOS_ID, EOS_ID)
    assert batch["src"].tolist() == [[7, 8, 9], [6, PAD_ID, PAD_ID]]
    assert batch["src_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["tgt_in"].tolist() == [[BOS_ID, 5, PAD_ID, PAD_ID], [BOS_ID, 10, 11, 12]]
    assert batch["tgt_out"].tolist() == [[5, EOS_ID, PAD_ID, PAD_ID], [10, 11, 12, EOS_ID]]
    assert batch["index"].tolist() == [4, 1] and batch["tgt_text"] == ["x", "y z w"]
    assert batch["src"].dtype == torch.long and batch["src_mask"].dtype == torch.bool


# ---- DataModule -----------------------------------------------------------------------------
def make_dm(base: Path, **kwargs) -> Seq2SeqDataModule:
    options = dict(data_dir=str(base), cache_dir=str(base / "cache"), vocab_size=400, max_tokens=96)
    return Seq2SeqDataModule(**{**options, **kwargs})


def test_datamodule_batches_vocab_and_cached_tokenizer(tmp_path, monkeypatch):
    write_multi30k(tmp_path)
    dm = make_dm(tmp_path, max_len=6)
    assert dm.pad_id == PAD_ID and dm.src_vocab_size == dm.tgt_vocab_size > 260  # properties build the tokenizer
    dm.setup("fit")
    stats = dm.stats["train"]
    assert stats["over_max_len"] > 0 and stats["pairs"] + stats["over_max_len"] == 120
    batches = list(dm.train_dataloader())
    assert len(batches) == stats["batches"]
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(stats["pairs"]))
    for b in batches:
        assert b["src"].shape == b["src_mask"].shape and b["tgt_in"].shape == b["tgt_out"].shape
        assert b["src"].shape[0] * max(b["src"].shape[1], b["tgt_in"].shape[1]) <= 96
        assert max(b["src"].shape[1], b["tgt_in"].shape[1]) <= 6
        assert (b["tgt_in"][:, 0] == BOS_ID).all() and (b["src"][~b["src_mask"]] == PAD_ID).all()
        assert "tgt_text" not in b  # the training split keeps no text, only its token store
    val = next(iter(dm.val_dataloader()))
    assert dm.tokenizer.decode_tgt(val["tgt_out"].tolist()) == val["tgt_text"]
    assert set(val) == {"src", "src_mask", "tgt_in", "tgt_out", "src_text", "tgt_text", "index"}

    monkeypatch.setattr(Tokenizer, "train", classmethod(lambda *a, **k: pytest.fail("cache not reused")))
    again = make_dm(tmp_path, max_len=6)
    assert again.tokenizer.to_dict() == dm.tokenizer.to_dict() and again.tokenizer_file == dm.tokenizer_file
    info = again.describe()
    assert info["splits"]["test"]["pairs"] == 10 and info["missing_splits"] == []


def test_datamodule_ddp_needs_own_sharding(tmp_path):
    write_multi30k(tmp_path)
    dm = make_dm(tmp_path)
    connector = SimpleNamespace(use_distributed_sampler=True)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1, _accelerator_connector=connector)
    with pytest.raises(ValueError, match="use_distributed_sampler: false"):
        dm.train_dataloader()
    connector.use_distributed_sampler = False
    rank1 = [i for b in dm.train_dataloader() for i in b["index"].tolist()]
    dm.trainer.global_rank = 0
    rank0 = [i for b in dm.train_dataloader() for i in b["index"].tolist()]
    assert not set(rank0) & set(rank1) and sorted(rank0 + rank1) == list(range(120))


@pytest.mark.filterwarnings("ignore:.*validation_step", "ignore:Be aware that when using", "ignore:.*LeafSpec")
def test_datamodule_resume_continues_the_data_order(tmp_path):
    """A Trainer stopped mid-epoch and resumed from its checkpoint sees the same batches as one run."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(1)), []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["index"].tolist())
            return (self.w ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    write_multi30k(tmp_path)
    flags = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                 max_epochs=2, use_distributed_sampler=False)
    full = Recorder()
    L.Trainer(enable_checkpointing=False, **flags).fit(full, make_dm(tmp_path))
    per_epoch = len(full.seen) // 2
    stop = per_epoch + 3  # mid-way through the second epoch
    first = Recorder()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=stop, save_top_k=-1)
    L.Trainer(max_steps=stop, callbacks=[saver], **flags).fit(first, make_dm(tmp_path))
    second = Recorder()
    dm = make_dm(tmp_path)
    L.Trainer(enable_checkpointing=False, **flags).fit(second, dm, ckpt_path=next((tmp_path / "ckpt").iterdir()))
    assert first.seen + second.seen == full.seen and len(second.seen) == per_epoch - 3
    assert dm.state_dict()["epoch"] == 1


# ---- the real corpus ------------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED_DATA / "multi30k" / "train.de").is_file(),
                    reason=f"the shared Multi30k copy is not at {SHARED_DATA / 'multi30k'}")
def test_real_multi30k_datamodule(tmp_path):
    """Full Multi30k de->en with a small tokenizer (trained on 3,000 pairs to keep the test fast)."""
    sample = load_pairs("multi30k", "train", data_dir=SHARED_DATA)[:3000]
    Tokenizer.train([s for s, _ in sample], [t for _, t in sample], vocab_size=1000).save(tmp_path / "tok.model")
    dm = Seq2SeqDataModule(data_dir=str(SHARED_DATA), tokenizer_path=str(tmp_path / "tok.model"))
    dm.setup("fit")
    train = dm.stats["train"]
    assert (train["pairs"], dm.stats["val"]["pairs"]) == (29000, 1014)
    assert len(dm.train_dataloader()) == train["batches"] and train["padding"] < 0.1
    print(f"multi30k de->en, vocab 1000, max_tokens {dm.max_tokens}: {train['batches']} train batches, "
          f"padding {train['padding']:.1%}")
