"""Adding a corpus as the README says: a DatasetSpec in the registry, then train on it for a few steps."""
from __future__ import annotations

import lightning as L
import pytest
from helpers import tiny_sentences

from translator.artifacts.checkpoint import load_bundle
from translator.data import registry
from translator.data.registry import DatasetSpec, load_pairs
from translator.inference.chatbot import Chatbot
from translator.inference.translator import Translator
from translator.models.transformer import Transformer
from translator.training.datamodule import Seq2SeqDataModule
from translator.training.system import Seq2SeqSystem


@pytest.fixture
def specs(monkeypatch):
    """Two user corpora: a TSV with official split files, a CSV chat corpus with a held-out split."""
    added = {
        "my-tsv": DatasetSpec(name="my-tsv", description="a TSV corpus with official splits", task="translation",
                              languages=("xx", "yy"), pairs=(("xx", "yy"), ("yy", "xx")), reader="tsv",
                              files={"train": ("train.tsv",), "val": ("dev.tsv",), "test": ("test.tsv",)},
                              reversed_pairs=(("yy", "xx"),)),
        "my-chat": DatasetSpec(name="my-chat", description="a CSV chat corpus", task="chat", languages=("xx",),
                               pairs=(("xx", "xx"),), reader="csv", options={"columns": ("question", "answer")},
                               files={split: ("chat.csv",) for split in registry.SPLITS}, holdout=(20, 20)),
    }
    monkeypatch.setattr(registry, "DATASETS", {**registry.DATASETS, **added})
    return added


def write_corpora(root):
    tsv = root / "my-tsv"
    tsv.mkdir()
    for name, n, seed in (("train.tsv", 200, 1), ("dev.tsv", 20, 2), ("test.tsv", 20, 3)):
        lines = [f"{s}\t{s.upper()}" for s in tiny_sentences(n, seed)]
        (tsv / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    chat = root / "my-chat"
    chat.mkdir()
    rows = ["question,answer"] + [f"{q},{a}" for q, a in zip(tiny_sentences(300, 4), tiny_sentences(300, 5))]
    (chat / "chat.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def train_few_steps(dm: Seq2SeqDataModule, path) -> None:
    dm.prepare_data()
    model = Transformer(dm.src_vocab_size, dm.tgt_vocab_size, dm.pad_id, d_model=32, num_heads=2,
                        num_encoder_layers=1, num_decoder_layers=1, ff_size=64, dropout=0.0)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1,
                        use_distributed_sampler=False, accelerator="cpu")
    trainer.fit(Seq2SeqSystem(model, val_bleu=False, compile_loss=False), datamodule=dm)
    trainer.save_checkpoint(path)


def test_a_tsv_corpus_with_official_splits(specs, tmp_path):
    write_corpora(tmp_path)
    val = load_pairs("my-tsv", "val", data_dir=tmp_path)
    assert len(val) == 20 and val[0][1] == val[0][0].upper()
    backwards = load_pairs("my-tsv", "val", "yy", "xx", data_dir=tmp_path)  # the reversed pair swaps columns
    assert backwards[0] == (val[0][1], val[0][0])
    dm = Seq2SeqDataModule("my-tsv", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), vocab_size=320,
                           max_tokens=256)
    train_few_steps(dm, tmp_path / "tsv.ckpt")
    bundle = load_bundle(tmp_path / "tsv.ckpt")
    assert bundle.task.name == "translation" and (bundle.src_lang, bundle.tgt_lang) == ("xx", "yy")
    assert len(Translator(bundle).translate(["a man runs"], method="greedy", max_len_b=3)) == 1


def test_a_csv_chat_corpus_with_a_heldout_split(specs, tmp_path):
    write_corpora(tmp_path)
    splits = {s: load_pairs("my-chat", s, data_dir=tmp_path) for s in registry.SPLITS}
    assert len(splits["val"]) >= 20 and len(splits["test"]) >= 20
    assert not {q for q, _ in splits["val"]} & {q for q, _ in splits["train"]}  # no sentence in two splits
    dm = Seq2SeqDataModule("my-chat", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), vocab_size=320,
                           max_tokens=256, context_dropout=0.2)
    assert dm.task == "chat" and dm.chat_context_turns == 1
    train_few_steps(dm, tmp_path / "chat.ckpt")
    bundle = load_bundle(tmp_path / "chat.ckpt")
    assert bundle.task.name == "chat" and bundle.chat_context_turns == 1 and bundle.empty_source == [bundle.tokenizer.sep_id]
    bot = Chatbot(bundle)
    assert bot.context_turns == 1 and isinstance(bot.reply(["earlier turn"], "a man runs", max_len_b=3), str)


def test_a_spec_with_a_bad_reader_or_missing_split_is_refused():
    with pytest.raises(ValueError, match="unknown reader"):
        DatasetSpec(name="x", description="", task="chat", languages=("xx",), pairs=(("xx", "xx"),),
                    reader="json", files={s: ("a",) for s in registry.SPLITS})
    with pytest.raises(ValueError, match="no entry for split"):
        DatasetSpec(name="x", description="", task="translation", languages=("xx",), pairs=(("xx", "xx"),),
                    files={"train": ("a",)})
