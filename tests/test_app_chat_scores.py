"""The Chat tab shows why a reply was chosen: every candidate with its scores, and sampled replies as they grow."""
from __future__ import annotations

import socket
from pathlib import Path

import gradio as gr
import pytest
from helpers import make_tiny_checkpoint, run_cli

from translator.serve.app import ModelRegistry, TranslatorApp, build_app
from translator.serve.service import ChatTurn, UserError

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers"),
              pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]
CHAT = dict(kind="lstm", dataset="chatbot-ko", src_lang="ko", tgt_lang="ko", task="chat", chat_context_turns=1,
            context_dropout=0.1)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chat-scores")
    return {"chat": make_tiny_checkpoint(root / "runs" / "chat.ckpt", steps=20, **CHAT),
            "backward": make_tiny_checkpoint(root / "runs" / "backward.ckpt", steps=20, reverse=True, **CHAT),
            "other": make_tiny_checkpoint(root / "other.ckpt", steps=2, seed=1, reverse=True, **CHAT)}


@pytest.fixture(scope="module")
def app(ckpts) -> TranslatorApp:
    return TranslatorApp(ModelRegistry([], chat_checkpoint=ckpts["chat"], chat_backward=ckpts["backward"]))


def test_a_turn_carries_every_candidate_with_its_scores(app):
    turn = app.chat_turn("a man runs", [], candidates=5, backward_weight=0.5)
    assert isinstance(turn, ChatTurn) and len(turn.candidates) == 5 and turn.reply
    for c in turn.candidates:
        assert c.total == pytest.approx(c.forward + 0.5 * c.backward - 1.0 * c.lm + 1.0 * c.length, abs=1e-4)
    rows = turn.rows()
    assert len(rows) == 5 and all(len(r) == len(ChatTurn.HEADERS) for r in rows)
    assert [r[0] for r in rows].count("✓") == 1 and rows[turn.chosen][1] == turn.reply
    assert turn.formula == "total = log p(r|c) + 0.5 · log p(c|r) − 1 · log p(r) + 1 · length"
    beam = app.chat_turn("a man runs", [], method="beam", beam_size=3, candidates=3, lm_weight=0.0,
                         backward_weight=0.0)
    assert all(c.backward is None for c in beam.candidates) and "no re-ranking" not in beam.formula


def test_sampled_replies_stream_then_show_their_scores(app):
    updates = list(app.chat_stream_ui("a man runs", [], "sample", 0.8, 0.9, 1.0, 3, 5, 1.0))
    assert len(updates) > 2  # one per sampling step, then the reply
    *partial, (history, box, status, table, formula) = updates
    assert all(p[0][-1]["content"].endswith("▌") and p[2].startswith("Sampling 3 candidates") for p in partial)
    assert [m["role"] for m in history] == ["user", "assistant"] and box == "" and status == ""
    assert "log p(c|r)" in formula and len(table.value["data"]) == 3
    assert all(isinstance(row[2], float) and isinstance(row[3], float) for row in table.value["data"])
    *_, (history, _, status, _, _) = app.chat_stream_ui("", [], "sample")
    assert history == [] and status.startswith("⚠️")


def test_the_chat_tab_has_the_candidates_table_and_the_backward_weight(ckpts):
    demo = build_app([], chat_checkpoint=ckpts["chat"], backward=ckpts["backward"])
    ids = {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert {"chat-candidates", "chat-formula", "chat-backward-weight"} <= ids
    texts = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "MMI-bidi" in texts and "backward.ckpt" in texts


def test_a_found_backward_model_is_never_the_chat_model(ckpts):
    registry = ModelRegistry([], checkpoints_dir=ckpts["chat"].parent)
    assert registry.chat is not None and registry.chat.path == ckpts["chat"]
    assert all(i.path != ckpts["backward"] for i in registry.translation)


def test_backward_weight_without_a_backward_model_is_a_user_error(ckpts):
    app = TranslatorApp(ModelRegistry([], chat_checkpoint=ckpts["chat"]))
    with pytest.raises(UserError, match="--backward"):
        app.chat_turn("a man", [], backward_weight=1.0)


def test_the_app_refuses_a_backward_model_that_does_not_fit_before_serving(ckpts, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run_cli(capsys, "app", "--chat_checkpoint", ckpts["chat"], "--backward", ckpts["other"],
                           "--checkpoints_dir", "null", "--port", port)
    assert code == 1 and "another tokenizer" in err and len(err.strip().splitlines()) == 1
