"""A chat model with its backward model p(message | reply): loading, checks, and MMI-bidi re-ranking end to end."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import make_tiny_checkpoint, run_cli

from translator.artifacts.checkpoint import BUNDLE_KEY, load_bundle
from translator.atomic import file_sha256
from translator.decoding import CHAT_BIDI_DECODING, CHAT_DECODING
from translator.inference.chatbot import Chatbot
from translator.inference.translator import attach_backward

CHAT = dict(kind="transformer", dataset="dailydialog", src_lang="en", tgt_lang="en", task="chat",
            chat_context_turns=1, context_dropout=0.1)
MESSAGES = ["a man runs", "two kids play in park", "the dog", "red ball with green hat"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backward")
    return {"forward": make_tiny_checkpoint(root / "forward.ckpt", steps=60, **CHAT),
            "backward": make_tiny_checkpoint(root / "backward.ckpt", steps=60, reverse=True, **CHAT),
            # another tokenizer: trained on other sentences (seed 1)
            "other_tokenizer": make_tiny_checkpoint(root / "other.ckpt", steps=5, seed=1, reverse=True, **CHAT),
            "two_turns": make_tiny_checkpoint(root / "two_turns.ckpt", steps=5, reverse=True,
                                              **{**CHAT, "chat_context_turns": 2}),
            "translation": make_tiny_checkpoint(root / "translation.ckpt", steps=5)}


def replies(bot: Chatbot, config) -> list[tuple[str, list[float]]]:
    out = []
    for message in MESSAGES:
        turn = bot.reply_candidates([], message, config)
        out.append((turn.text, [c.total for c in turn.candidates]))
    return out


def test_without_a_backward_model_decoding_is_unchanged(ckpts):
    plain = Chatbot.from_checkpoint(ckpts["forward"])
    assert plain.default_decoding == CHAT_DECODING and CHAT_DECODING.backward_weight == 0.0
    with_backward = Chatbot.from_checkpoint(ckpts["forward"], backward=ckpts["backward"])
    assert with_backward.default_decoding == CHAT_BIDI_DECODING
    # beta 0 with the backward model loaded: exactly the anti-LM decoding, candidates and scores alike
    for config in (CHAT_DECODING, CHAT_DECODING.replace(method="beam", beam_size=4)):
        assert replies(with_backward, config) == replies(plain, config)


def test_mmi_bidi_reranks_by_the_backward_score(ckpts):
    bot = Chatbot.from_checkpoint(ckpts["forward"], backward=ckpts["backward"])
    config = CHAT_BIDI_DECODING.replace(backward_weight=2.0, candidates=6)
    for message in MESSAGES:
        turn = bot.reply_candidates([], message, config)
        assert len(turn.candidates) == 6 and turn.text == turn.candidates[turn.chosen].text
        totals = [c.total for c in turn.candidates]
        assert totals == sorted(totals, reverse=True)
        for c in turn.candidates:
            expected = c.forward + 2.0 * c.backward - 1.0 * c.lm + 1.0 * c.length
            assert c.total == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("backward, message", [
    ("other_tokenizer", "another tokenizer"), ("forward", "not a backward one"),
    ("translation", "a translation checkpoint"), ("two_turns", "2 turn(s) of context")])
def test_a_backward_model_that_does_not_fit_is_refused_with_one_message(ckpts, capsys, tmp_path, backward, message):
    source = tmp_path / "in.txt"
    source.write_text("a man runs\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", ckpts["forward"], "--backward", ckpts[backward],
                             "--input", source)
    assert code == 1 and message in err and str(ckpts[backward]) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""


def test_backward_weight_needs_a_backward_model(ckpts, capsys, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a man runs\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "translate", "--checkpoint", ckpts["forward"], "--input", source,
                           "--decode.backward_weight", 1.0)
    assert code == 1 and "--backward CKPT" in err and len(err.strip().splitlines()) == 1


def test_translate_replies_with_the_backward_model(ckpts, capsys, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(MESSAGES) + "\n\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", ckpts["forward"], "--backward", ckpts["backward"],
                             "--input", source, "--decode.nbest", 2)
    assert code == 0, err
    lines = out.split("\n")[:-1]
    assert len(lines) == len(MESSAGES) + 1 and lines[-1] == ""
    assert all(len(line.split("\t")) == 4 for line in lines[:-1])  # text, score, text, score


# ---- one checkpoint that carries both models (`translator attach`) --------------------------------------------
@pytest.fixture(scope="module")
def attached(ckpts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attached") / "chat-mmi.ckpt"
    attach_backward(ckpts["forward"], ckpts["backward"], out)
    return out


def test_an_attached_backward_model_decodes_as_the_one_given_beside(ckpts, attached):
    beside = Chatbot.from_checkpoint(ckpts["forward"], backward=ckpts["backward"])
    carried = Chatbot.from_checkpoint(attached)
    assert carried.backward is not None and carried.default_decoding == CHAT_BIDI_DECODING
    for config in (CHAT_BIDI_DECODING, CHAT_BIDI_DECODING.replace(backward_weight=2.0, candidates=6)):
        assert replies(carried, config) == replies(beside, config)
    # its chat weights are the chat model's, under the names every loader reads ("model."), the tokenizer stored once
    combined, forward = torch.load(attached, weights_only=True), torch.load(ckpts["forward"], weights_only=True)
    chat_weights = {k: v for k, v in combined["state_dict"].items() if k.startswith("model.")}
    assert chat_weights.keys() == {k for k in forward["state_dict"] if k.startswith("model.")}
    assert all(torch.equal(v, forward["state_dict"][k]) for k, v in chat_weights.items())
    assert "tokenizer" not in combined[BUNDLE_KEY]["backward"]
    assert combined[BUNDLE_KEY]["backward"]["source"]["sha256"] == file_sha256(ckpts["backward"])


def test_attach_on_the_command_line_and_what_it_refuses(ckpts, attached, capsys, tmp_path):
    out = tmp_path / "both.ckpt"
    code, printed, err = run_cli(capsys, "attach", ckpts["forward"], ckpts["backward"], "--output", out)
    assert code == 0 and out.is_file() and str(out) in printed, err
    source = tmp_path / "in.txt"
    source.write_text("\n".join(MESSAGES) + "\n", encoding="utf-8")
    code, carried, err = run_cli(capsys, "translate", "--checkpoint", out, "--input", source)
    assert code == 0, err
    code, beside, err = run_cli(capsys, "translate", "--checkpoint", ckpts["forward"], "--backward", ckpts["backward"],
                                "--input", source)
    assert code == 0 and carried == beside, err
    before = ckpts["forward"].read_bytes()
    for args, message in [((ckpts["forward"], ckpts["translation"], "--output", tmp_path / "x.ckpt"),
                           "a translation checkpoint"),
                          ((ckpts["forward"], ckpts["other_tokenizer"], "--output", tmp_path / "x.ckpt"),
                           "another tokenizer"),
                          ((ckpts["forward"], ckpts["backward"], "--output", ckpts["forward"]), "is the checkpoint")]:
        code, printed, err = run_cli(capsys, "attach", *args)
        assert code == 1 and message in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.ckpt").exists() and ckpts["forward"].read_bytes() == before


def test_a_crafted_attached_backward_model_is_refused_before_it_is_built(attached, tmp_path):
    checkpoint = torch.load(attached, weights_only=True)
    checkpoint[BUNDLE_KEY]["backward"]["model"]["init_args"]["d_model"] = 16384
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    with pytest.raises(ValueError, match="its backward model.*does not match its stored weights"):
        load_bundle(crafted)
