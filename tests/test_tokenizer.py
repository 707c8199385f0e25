"""SentencePiece tokenizer: fixed special ids, lossless round trips in many scripts, save/load."""
from __future__ import annotations

import pytest
import torch

from translator.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_TOKEN, UNK_ID, Tokenizer

GERMAN = ["Ein Mann mit einem orangefarbenen Hut starrt etwas an.", "Zwei junge weiße Männer sind im Freien.",
          "Größere Straßen führen über die Brücke."]
FRENCH = ["Un homme avec un chapeau orange regarde quelque chose.", "Ça va ? Où est l'hôtel ?",
          "Les élèves âgés de dix-huit ans étudient à l'école."]
KOREAN = ["12시 땡!", "가끔은 혼자인게 좋다", "따뜻하게 사세요!", "반가워요, 정말요."]
UNSEEN = ["Ein Hund 🐕 läuft über die Straße.", "Où est le café ? ☕", "오늘 날씨가 좋네요 😊",
          "Mixed: Hello 世界, Привет, مرحبا, 안녕 and 🎉🎉!", "Größe: 1234 €"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(GERMAN + FRENCH, GERMAN + KOREAN, vocab_size=400)


def test_special_ids_are_fixed(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID, tokenizer.sep_id) == (0, 1, 2, 3, 4)
    assert [tokenizer.src.id_to_piece(i) for i in range(5)] == ["<pad>", "<unk>", "<sos>", "<eos>", SEP_TOKEN]
    assert tokenizer.joint and tokenizer.src_vocab_size == tokenizer.tgt_vocab_size


@pytest.mark.parametrize("texts", [GERMAN, FRENCH, KOREAN, UNSEEN], ids=["german", "french", "korean", "unseen"])
def test_round_trip_is_lossless(tokenizer, texts):
    src_ids, tgt_ids = tokenizer.encode_src(texts), tokenizer.encode_tgt(texts)
    assert tokenizer.decode_src(src_ids) == texts
    assert tokenizer.decode_tgt(tgt_ids) == texts
    assert all(UNK_ID not in ids for ids in src_ids + tgt_ids)  # byte fallback: no <unk>, even for emoji
    assert all(BOS_ID not in ids and EOS_ID not in ids for ids in tgt_ids)


def test_sep_is_one_piece_and_decode_tgt_stops_at_eos(tokenizer):
    ids = tokenizer.encode_src([f"Hallo {SEP_TOKEN} 안녕"])[0]
    assert ids.count(tokenizer.sep_id) == 1
    y = tokenizer.encode_tgt(["Zwei junge Männer."])[0]
    padded = torch.tensor([BOS_ID, *y, EOS_ID, *y, PAD_ID])
    assert tokenizer.decode_tgt([padded]) == ["Zwei junge Männer."]


def test_save_load_and_checkpoint_dict(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "joint.model")
    loaded = Tokenizer.load(tmp_path / "joint.model")
    assert loaded.encode_src(UNSEEN) == tokenizer.encode_src(UNSEEN)
    assert Tokenizer.from_dict(tokenizer.to_dict()).to_dict() == tokenizer.to_dict()
    separate = Tokenizer.train(GERMAN * 3, KOREAN * 3, vocab_size=300, joint=False)
    separate.save(tmp_path / "two.model")
    again = Tokenizer.load(tmp_path / "two.model")
    assert not again.joint and again.decode_tgt(again.encode_tgt(KOREAN)) == KOREAN
    assert again.src is not again.tgt and again.to_dict() == separate.to_dict()


def test_user_errors_are_one_clear_message(tmp_path):
    with pytest.raises(ValueError, match="model_type"):
        Tokenizer.train(GERMAN, GERMAN, model_type="wordpiece")
    with pytest.raises(ValueError, match="empty corpus"):
        Tokenizer.train(["", "  "], [])
    with pytest.raises(FileNotFoundError, match="missing.model"):
        Tokenizer.load(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model"):
        Tokenizer.load(tmp_path / "bad.model")
