"""Translator and Chatbot on tiny real checkpoints: one output per input, chat context building."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_tiny_checkpoint

from translator.inference.chatbot import Chatbot
from translator.inference.translator import Translator


def tiny_checkpoint(tmp_path_factory, name: str, **kwargs) -> Path:
    """One tiny checkpoint per session, shared with the app tests that ask for the same name."""
    path = tmp_path_factory.getbasetemp() / "app-checkpoints" / f"{name}.ckpt"
    if not path.exists():
        make_tiny_checkpoint(path, steps=20, **kwargs)
    return path


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint(tmp_path_factory, "lstm", kind="lstm"))


@pytest.fixture
def chatbot(tmp_path_factory) -> Chatbot:
    path = tiny_checkpoint(tmp_path_factory, "chat", kind="lstm", dataset="dailydialog", src_lang="en",
                           tgt_lang="en", context_turns=2)
    return Chatbot.from_checkpoint(path)


def test_translate_keeps_one_output_per_input(translator):
    translator.max_src_tokens = 24  # a low limit keeps the over-long line quick to decode
    lines = ["a man runs", "", "   \t ", "a dog " * 5000, "😀🎉🚀", "a\x00man\x07\x1b[31m runs\r", "the dog"]
    results = translator.translate(lines, batch_size=3)
    assert len(results) == len(lines)
    assert results[1].text == results[2].text == ""  # empty and whitespace-only lines stay empty
    assert results[3].truncated and not results[0].truncated  # 10,000 pieces cut to the limit
    assert all(isinstance(r.text, str) for r in results)
    alone = [translator.translate([line])[0].text for line in lines]
    assert [r.text for r in results] == alone  # batching and order do not change any output


def test_build_context_uses_the_last_turns(chatbot):
    sep = f" {chatbot.tokenizer.sep_token} "
    assert chatbot.context_turns == 2
    assert chatbot.build_context([], "hello") == "hello"
    assert chatbot.build_context(["a man"], "hello") == sep.join(["a man", "hello"])
    many = ["one", "two", "three", "four"]
    # context_turns counts the message itself, as in the DailyDialog reader's pairs
    assert chatbot.build_context(many, "hello") == sep.join(["four", "hello"])
    pairs = [("one", "two"), ("three", "four")]
    dicts = [{"role": "user", "content": "three"}, {"role": "assistant", "content": [{"type": "text", "text": "four"}]}]
    assert chatbot.build_context(pairs, "hello") == chatbot.build_context(dicts, "hello") == \
        chatbot.build_context(many, "hello")
    assert chatbot.build_context(["three", "four", "  "], "hello") == sep.join(["four", "hello"])


def test_build_context_drops_the_oldest_turn_first(chatbot):
    chatbot.context_turns = 5
    message = "a man runs"
    turns = ["the dog " * 3, "two kids play", "red ball"]
    length = len(chatbot.tokenizer.encode_src([chatbot.build_context(turns, message)])[0])
    chatbot.max_src_tokens = length - 1  # one piece too short for all three turns
    context = chatbot.build_context(turns, message)
    sep = f" {chatbot.tokenizer.sep_token} "
    assert context == sep.join(["two kids play", "red ball", message])
    chatbot.max_src_tokens = 1  # not even the message fits with a turn: the message alone
    assert chatbot.build_context(turns, message) == message


def test_reply_returns_text_and_rejects_empty_messages(chatbot):
    short = {"max_len_a": 1.0, "max_len_b": 5}  # an untrained model may never stop on its own
    assert isinstance(chatbot.reply([], "hello", seed=0, **short), str)
    assert isinstance(chatbot.reply(["a man", "the dog", "two kids"], "hello", decoder="beam", beam_size=2, **short),
                      str)
    assert chatbot.reply(["a man"], "hello", seed=1, **short) == chatbot.reply(["a man"], "hello", seed=1, **short)
    for message in ("", "   "):
        with pytest.raises(ValueError, match="empty"):
            chatbot.reply([], message)


def test_bf16_recurrent_models_decode_in_fp32_on_cpus_without_bf16(tmp_path_factory, monkeypatch, capsys):
    import translator.engines.pytorch as engines
    from translator.artifacts.checkpoint import load_bundle

    monkeypatch.setattr(engines, "cpu_bf16_is_fast", lambda: False)  # an AVX2-only CPU
    lstm = load_bundle(tiny_checkpoint(tmp_path_factory, "lstm", kind="lstm"))
    fallback = Translator(lstm, precision="bf16")
    assert fallback.precision == "fp32" and "becomes fp32" in capsys.readouterr().err
    assert [t.text for t in fallback.translate(["ein hund"])] == [t.text for t in Translator(lstm).translate(["ein hund"])]
    transformer = load_bundle(tiny_checkpoint(tmp_path_factory, "transformer", kind="transformer"))
    assert Translator(transformer, precision="bf16").precision == "bf16"  # no recurrent module: autocast works
    monkeypatch.setattr(engines, "cpu_bf16_is_fast", lambda: True)
    assert Translator(lstm, precision="bf16").precision == "bf16"
