"""The Gradio app: its functions without a server (bad input never raises), then its API over HTTP."""
from __future__ import annotations

import contextlib
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest
import torch
from helpers import make_tiny_checkpoint
from matplotlib.figure import Figure

from translator.inference.translator import Translator
from translator.serve.app import (CHAT_TRAIN_HINT, TRAIN_HINT, ModelRegistry, TranslatorApp, UserError, build_app,
                                  discover_checkpoints, launch)
from translator.serve.service import MAX_HISTORY_TURNS

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers"),  # gr.Warning outside a server
              pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]  # gradio's own pandas deprecations
KINDS = {"transformer": {"kind": "transformer"}, "attention": {"kind": "attention"}, "lstm": {"kind": "lstm"},
         "chat": {"kind": "lstm", "dataset": "dailydialog", "src_lang": "en", "tgt_lang": "en", "context_turns": 2},
         "chat_ko": {"kind": "lstm", "dataset": "chatbot-ko", "src_lang": "ko", "tgt_lang": "ko", "task": "chat",
                     "chat_context_turns": 1, "context_dropout": 0.1}}


def tiny_checkpoint(tmp_path_factory, name: str) -> Path:
    """One tiny checkpoint per session, shared by the test files that ask for the same name."""
    path = tmp_path_factory.getbasetemp() / "app-checkpoints" / f"{name}.ckpt"
    if not path.exists():
        make_tiny_checkpoint(path, steps=20, **KINDS[name])
    return path


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    return {name: tiny_checkpoint(tmp_path_factory, name) for name in KINDS}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    (root / "notes.ckpt").write_text("not a checkpoint\n", encoding="utf-8")
    (root / "folder.ckpt").mkdir()
    return {"missing": root / "missing.ckpt", "text": root / "notes.ckpt", "dir": root / "folder.ckpt"}


@pytest.fixture(scope="module")
def app(ckpts, bad_files) -> TranslatorApp:
    registry = ModelRegistry([ckpts["transformer"], ckpts["attention"], ckpts["lstm"], *bad_files.values()],
                             chat_checkpoint=ckpts["chat"])
    return TranslatorApp(registry, max_input_chars=2000)


def label(app: TranslatorApp, path: Path) -> str:
    return next(i.label for i in app.registry.translation if i.path == path)


# ---- translate ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("", "empty"), ("   \n\t  ", "empty"), (None, "empty"),
                                            ("x" * 50_000, "50,000 characters")])
def test_translate_rejects_empty_and_huge_input_with_a_message(app, text, expected):
    result = app.translate_text(text)
    assert result.error and expected in result.error
    assert result.text == "" and result.figure is None and result.info.startswith("⚠️")


@pytest.mark.parametrize("text", ["😀🎉🚀", "Ein Mann 男人 رجل мужчина 😀", "a\x00man\x07runs\u200b",
                                  "a man\n\nthe dog"])
def test_translate_handles_unusual_text(app, text):
    result = app.translate_text(text)
    assert result.error is None, result.info
    assert isinstance(result.text, str)
    assert len(result.text.split("\n")) == len(text.splitlines())  # one output line per input line


@pytest.mark.parametrize("name, message", [("missing", "not found"), ("text", "is a text file, not a checkpoint"),
                                           ("dir", "directory")])
def test_bad_checkpoint_gives_a_message_and_the_app_keeps_serving(app, bad_files, name, message):
    assert label(app, bad_files[name]).endswith("unreadable")
    result = app.translate_text("a man runs", label(app, bad_files[name]))
    assert result.error and message in result.error and result.info.startswith("⚠️")
    assert app.translate_text("a man runs").error is None  # the default checkpoint still works


def test_unlisted_checkpoint_path_is_refused_not_loaded(app, tmp_path):
    for choice in ("/etc/passwd", str(tmp_path / "other.ckpt")):
        result = app.translate_text("a man runs", choice)
        assert result.error and "Unknown checkpoint" in result.error


def test_checkpoint_can_be_named_by_label_or_path(app, ckpts):
    for choice in (label(app, ckpts["lstm"]), str(ckpts["lstm"])):
        result = app.translate_text("a man runs", choice)
        assert result.error is None and "LSTMSeq2Seq" in result.info


@pytest.mark.parametrize("decoder, beam_size, expected", [("sample", 5, "Unknown decoder"), ("beam", 0, "between"),
                                                          ("beam", 99, "between"), ("beam", "many", "number")])
def test_bad_decoding_knobs_give_a_message(app, decoder, beam_size, expected):
    result = app.translate_text("a man runs", decoder=decoder, beam_size=beam_size)
    assert result.error and expected in result.error


@pytest.mark.parametrize("name", ["transformer", "attention"])
def test_attention_models_get_a_heatmap(ckpts, name):
    app = TranslatorApp(ModelRegistry([ckpts[name]]))
    translator = app.registry.translator(app.registry.default)
    never_stop(translator)  # a 20-step model often stops at once; the heatmap needs output rows
    result = app.translate_text("a man runs in the park", decoder="beam", beam_size=2)
    assert result.error is None and isinstance(result.figure, Figure)
    axes = result.figure.axes[0]
    rows, cols = axes.images[0].get_array().shape
    assert cols == len(axes.get_xticklabels()) == 6  # ▁a ▁man ▁runs ▁in ▁the ▁park
    assert rows == len(axes.get_yticklabels()) == len(result.text.split()) > 0
    assert "heatmap" in result.info


def never_stop(translator: Translator) -> None:
    """Forbid eos in this loaded model, so decoding runs to the length limit."""
    step, eos = translator.model.decode_step, translator.tokenizer.eos_id

    def decode_step(tokens, state):
        logits, state = step(tokens, state)
        logits = logits.clone()
        logits[:, eos] = -1e4
        return logits, state

    translator.model.decode_step = decode_step


def test_lstm_says_it_has_no_attention(app, ckpts):
    result = app.translate_text("a man runs in the park", label(app, ckpts["lstm"]))
    assert result.error is None and result.figure is None
    assert "no attention" in result.info and "context vector" in result.info
    assert "no attention" in app.describe_checkpoint(label(app, ckpts["lstm"]))


def test_translate_ui_returns_three_outputs_and_never_raises(app):
    text, figure, info = app.translate_ui("", None, "greedy", 5)
    assert text == "" and figure is None and "empty" in info
    text, figure, info = app.translate_ui("a man runs", None, "greedy", 5.0)  # sliders send floats
    assert isinstance(text, str) and "Transformer" in info


# ---- chat ---------------------------------------------------------------------------------------

def _respond(app, *args, **kwargs):
    """The Send button as the user sees it when the stream ends: (history, message box, status)."""
    *_, (history, box, status, _, _) = app.chat_stream_ui(*args, **kwargs)
    return history, box, status

def test_chat_send_appends_user_and_bot_turns(app):
    history = [{"role": "user", "content": [{"type": "text", "text": "a man"}]},  # gradio's content parts
               {"role": "assistant", "content": [{"type": "text", "text": "the dog"}]}]
    new, box, status = _respond(app, "hello there 😀", history, "sample", 0.8, 0.9, 0.0, 4, 5)
    assert box == "" and status == ""
    assert [m["role"] for m in new] == ["user", "assistant", "user", "assistant"]
    assert new[0]["content"] == "a man" and new[2]["content"] == "hello there 😀" and new[3]["content"]
    new, _, _ = _respond(app, "hello", [], "beam", 1.0, 1.0, 0.0, 3, 3)
    assert len(new) == 2
    new, _, status = _respond(app, "hello", [])  # every decoding option at the model's default
    assert len(new) == 2 and status == ""


def test_chat_accepts_any_history_within_its_limits(app):
    histories = [[], ["", "   "], ["a man " * 300] * 3, [f"turn {i}" for i in range(MAX_HISTORY_TURNS)],
                 [("a man", "the dog")], [{"role": "user", "content": ""}, {"role": "assistant", "content": None}],
                 [None, 3, {"x": 1}]]
    for history in histories:
        assert isinstance(app.chat_reply("hello", history), str)


@pytest.mark.parametrize("history, expected", [
    ([f"turn {i}" for i in range(MAX_HISTORY_TURNS + 1)], f"101 turns; this app takes at most {MAX_HISTORY_TURNS}"),
    (["x" * 2000] * 100_000, "100,000 turns"), ([("a", "b")] * 51, "102 turns"),
    (["a man " * 3000] * 3, "54,000 characters; this app takes at most 20,000"), ("a man", "must be a list")])
def test_chat_history_over_its_limits_is_refused_before_queueing(app, history, expected):
    with pytest.raises(UserError, match=expected):
        app.chat_reply("hello", history)
    checks = app.validate_chat("hello", history), app.validate_api_chat("hello", history)
    for check in checks:  # what Gradio runs before queueing: the request never waits or decodes
        assert check[0]["is_valid"] is False and expected in check[0]["message"]


def test_chat_tab_keeps_its_conversation_within_the_limits(app):
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
               for i in range(MAX_HISTORY_TURNS)]
    new, box, status = _respond(app, "hello", history)
    assert status == "" and new[-2]["content"] == "hello" and len(new) <= MAX_HISTORY_TURNS
    assert app.check_history(new) and app.validate_chat("next", new)[0]["is_valid"]


@pytest.mark.parametrize("args, expected", [
    ({"method": "s" * 100_000}, "decoder field has 100,000 characters"),
    ({"temperature": "9" * 5000}, "temperature must be"), ({"candidates": 10**12}, "candidates must be between")])
def test_chat_options_have_limits_and_are_not_echoed(app, args, expected):
    with pytest.raises(UserError, match=expected) as err:
        app.chat_reply("hello", [], **args)
    assert len(str(err.value)) < 300


def test_translate_fields_have_limits(app):
    result = app.translate_text("a man", "c" * 100_000)
    assert "checkpoint field has 100,000 characters" in result.error
    assert len(app.translate_text("a man", decoder="d" * 100_000).error) < 300


@pytest.mark.parametrize("message, knobs, expected", [
    ("", {}, "empty"), ("   ", {}, "empty"), ("y" * 50_000, {}, "50,000"),
    ("hi", {"temperature": 0}, "temperature"), ("hi", {"top_p": 2}, "top-p"), ("hi", {"method": "x"}, "decoder"),
    ("hi", {"lm_weight": -1}, "anti-LM"), ("hi", {"candidates": 0}, "candidates")])
def test_chat_bad_input_keeps_history_and_shows_a_message(app, message, knobs, expected):
    history = [{"role": "user", "content": "a man"}, {"role": "assistant", "content": "the dog"}]
    args = {"method": "sample", "temperature": 0.8, "top_p": 0.9, "lm_weight": 0.0, "candidates": 4, "beam_size": 5,
            **knobs}
    new, _, status = _respond(app, message, history, **args)
    assert new == history and status.startswith("⚠️") and expected in status


def test_chat_tab_shows_the_models_language_examples_context_and_decoding(ckpts):
    from translator.decoding import CHAT_DECODING
    from translator.serve.service import CHAT_EXAMPLES

    demo = build_app([ckpts["lstm"]], chat_checkpoint=ckpts["chat_ko"])
    texts = " ".join(str(block.value) for block in demo.blocks.values() if isinstance(block, gr.Markdown))
    assert "Korean" in texts and "only your last message" in texts
    assert f"{CHAT_DECODING.lm_weight}" in texts and "anti-LM" in texts
    boxes = [b for b in demo.blocks.values() if isinstance(b, gr.Textbox) and b.elem_id == "message"]
    assert boxes and boxes[0].placeholder == "메시지를 입력하세요…"
    samples = [str(x) for b in demo.blocks.values() if isinstance(b, gr.Dataset) for row in b.samples for x in row]
    assert set(CHAT_EXAMPLES["ko"]) <= set(samples)
    radios = [b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.elem_id == "chat-method"]
    assert radios and radios[0].value == CHAT_DECODING.method
    english = build_app([ckpts["lstm"]], chat_checkpoint=ckpts["chat"])
    texts = " ".join(str(block.value) for block in english.blocks.values() if isinstance(block, gr.Markdown))
    assert "English" in texts and "1 previous turn" in texts  # trained with 2 turns: the message and one before


def test_a_reply_is_never_empty(ckpts):
    """A model that would end every reply at once (eos first) still answers something."""
    from translator.inference.chatbot import Chatbot

    bot = Chatbot.from_checkpoint(ckpts["chat_ko"])
    with torch.no_grad():
        bias = next(m for m in bot.model.modules() if isinstance(m, torch.nn.Linear) and m.out_features ==
                    bot.tokenizer.tgt_vocab_size).bias
        bias[bot.tokenizer.eos_id] += 100.0  # eos first, with near certainty
    for method in ("sample", "beam", "greedy"):
        assert bot.reply([], "안녕하세요", method=method, min_len=0, max_len_b=4).strip()


def test_chat_without_checkpoint_says_how_to_train(ckpts):
    app = TranslatorApp(ModelRegistry([ckpts["lstm"]]))
    with pytest.raises(UserError, match="chat_dailydialog.yaml"):
        app.chat_reply("hello")
    _, _, status = _respond(app, "hello", [])
    assert CHAT_TRAIN_HINT in status
    demo = build_app([ckpts["lstm"]])  # the Chat tab itself says how to train one
    texts = [str(block.value) for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any(CHAT_TRAIN_HINT in text for text in texts)


# ---- registry and launch ------------------------------------------------------------------------

def test_discovery_prefers_best_and_last_and_routes_chat_checkpoints(ckpts, tmp_path):
    for name in ("run1/epoch=3.ckpt", "run1/last.ckpt", "run2/best-bleu.ckpt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ckpts["lstm"], tmp_path / name)
    shutil.copy(ckpts["chat"], tmp_path / "chat.ckpt")
    names = [p.name for p in discover_checkpoints(tmp_path)]
    assert names[0] == "best-bleu.ckpt" and names[1] == "last.ckpt"
    registry = ModelRegistry(None, checkpoints_dir=tmp_path)
    assert registry.labels[0] == "run2/best-bleu.ckpt · LSTMSeq2Seq · de→en"
    assert len(registry.labels) == 3  # the chat checkpoint goes to the Chat tab, not the dropdown
    assert registry.chat is not None and registry.chat.path.name == "chat.ckpt"


def test_models_load_once_when_many_requests_arrive(ckpts, monkeypatch):
    registry = ModelRegistry([ckpts["lstm"]])
    loads = []
    original = Translator.from_checkpoint.__func__

    def counting(cls, path, device="cpu"):
        loads.append(path)
        return original(cls, path, device)

    monkeypatch.setattr(Translator, "from_checkpoint", classmethod(counting))
    info = registry.resolve(None)
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: registry.translator(info), range(8)))
    assert len(loads) == 1 and all(m is models[0] for m in models)


def test_api_translate_draws_no_heatmap(ckpts, monkeypatch):
    import translator.serve.service

    app = TranslatorApp(ModelRegistry([ckpts["transformer"]]))
    never_stop(app.registry.translator(app.registry.default))  # output rows: a heatmap could be drawn
    drawn = []
    draw = translator.serve.service.attention_figure
    monkeypatch.setattr(translator.serve.service, "attention_figure", lambda *a: drawn.append(1) or draw(*a))
    assert app.api_translate("a man runs in the park")
    assert drawn == []  # /translate returns text only
    assert isinstance(app.translate_ui("a man runs in the park", None, "greedy", 5)[1], Figure) and drawn == [1]


def test_a_checkpoint_that_fails_to_load_is_tried_once(ckpts, monkeypatch):
    loads = []

    def broken(cls, path, device="cpu"):
        loads.append(path)
        raise RuntimeError("size mismatch for embed.weight")

    monkeypatch.setattr(Translator, "from_checkpoint", classmethod(broken))
    app = TranslatorApp(ModelRegistry([ckpts["lstm"]]))
    errors = [app.translate_text("a man runs").error for _ in range(3)]
    assert len(loads) == 1
    assert all(e == errors[0] and "Cannot load" in e and "size mismatch" in e for e in errors)


def test_read_auth(tmp_path):
    from translator.serve.app import read_auth

    assert read_auth("ann:s3cret:x") == [("ann", "s3cret:x")]
    users = tmp_path / "users.txt"
    users.write_text("# who may log in\nann:one\n\nbob:two\n", encoding="utf-8")
    assert read_auth(str(users)) == [("ann", "one"), ("bob", "two")]
    users.write_text("ann:one\nbob\n", encoding="utf-8")
    with pytest.raises(ValueError, match="users.txt:2: expected USER:PASSWORD"):
        read_auth(str(users))
    for bad in ("nobody", ":pw", "ann:"):
        with pytest.raises(ValueError, match="USER:PASSWORD"):
            read_auth(bad)


@pytest.mark.parametrize("host, auth, warned", [("0.0.0.0", None, True), ("0.0.0.0", "ann:pw", False),
                                                ("127.0.0.1", None, False), ("localhost", None, False)])
def test_launch_passes_auth_and_warns_when_serving_others_without_it(ckpts, monkeypatch, capsys, host, auth,
                                                                       warned):
    from translator.serve.app import SESSION_CAPACITY

    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    launch([str(ckpts["lstm"])], checkpoints_dir=None, host=host, port=free_port(), auth=auth)
    assert launched["server_name"] == host and launched["state_session_capacity"] == SESSION_CAPACITY
    assert launched["auth"] == ([tuple(auth.split(":"))] if auth else None)
    assert ("without --auth" in capsys.readouterr().err) == warned


def test_launch_without_checkpoints_says_how_to_train(tmp_path):
    with pytest.raises(ValueError, match="translator/configs/transformer.yaml"):
        launch(checkpoints_dir=str(tmp_path))


def test_cli_app_without_checkpoints_exits_with_a_message(tmp_path, capsys):
    from translator.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--checkpoint", str(tmp_path / "nope.ckpt"), "--checkpoints_dir", str(tmp_path)])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and TRAIN_HINT in err and "Traceback" not in err


# ---- the API over HTTP --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


server_demo: list = []  # the module's server, for tests that look inside it


@pytest.fixture(scope="module")
def server(ckpts, bad_files):
    demo = build_app([ckpts["transformer"], ckpts["lstm"], bad_files["text"]], chat_checkpoint=ckpts["chat"],
                     checkpoints_dir=None, concurrency_limit=2)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    server_demo[:] = [demo]
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(server, verbose=False)


def test_api_lists_only_translate_and_chat(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/translate", "/chat"}


def test_api_translate_and_chat(client, ckpts):
    assert isinstance(client.predict("Ein Mann.", api_name="/translate"), str)
    lstm = client.predict("a man runs", str(ckpts["lstm"]), "beam", 2, api_name="/translate")
    assert isinstance(lstm, str)
    reply = client.predict("hello", api_name="/chat")
    assert isinstance(reply, str) and reply
    reply = client.predict("hello", ["a man", {"role": "assistant", "content": "the dog"}], "beam", api_name="/chat")
    assert isinstance(reply, str)


@pytest.mark.parametrize("args, expected", [(("",), "empty"), (("z" * 50_000,), "50,000 characters"),
                                            (("hi", "/etc/passwd"), "Unknown checkpoint"),
                                            (("hi", "notes.ckpt · unreadable"), "is a text file, not a checkpoint")])
def test_api_errors_are_friendly(client, args, expected):
    from gradio_client.exceptions import AppError, ValidationError

    # Invalid requests are refused by the validator before they are queued (ValidationError); the rest
    # come back from the handler as gr.Error (AppError). Either way the client gets the message.
    with pytest.raises((AppError, ValidationError), match=expected):
        client.predict(*args, api_name="/translate")
    assert isinstance(client.predict("a man", api_name="/translate"), str)  # still serving


def test_api_concurrent_calls(client):
    def call(i: int) -> str:
        if i % 2:
            return client.predict(f"hello {i}", api_name="/chat")
        return client.predict(f"a man runs {i}", api_name="/translate")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(8)))  # re-raises the first failure
    assert len(results) == 8 and all(isinstance(r, str) for r in results)


def call_translate(url: str, text: str) -> str:
    """One /translate request over Gradio's plain HTTP API: POST, then read the event stream."""
    import json
    import urllib.request

    body = json.dumps({"data": [text, "", "greedy", 1]}).encode()
    request = urllib.request.Request(f"{url}gradio_api/call/translate", body, {"Content-Type": "application/json"})
    event_id = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    return urllib.request.urlopen(f"{url}gradio_api/call/translate/{event_id}", timeout=60).read().decode()


def test_gradio_keeps_a_bounded_number_of_sessions(ckpts, monkeypatch):
    """Every API call is a Gradio session holding a copy of every component's config (~130 KB here): the
    app keeps SESSION_CAPACITY of them, not Gradio's default 10,000 (RSS grew ~130 KB a request)."""
    import translator.serve.app

    launched = {}
    original = gr.Blocks.launch

    def launch_in_background(self, **kwargs):
        launched["demo"] = self
        return original(self, **kwargs, prevent_thread_lock=True, quiet=True)

    monkeypatch.setattr(translator.serve.app, "SESSION_CAPACITY", 3)
    monkeypatch.setattr(gr.Blocks, "launch", launch_in_background)
    port = free_port()
    launch([str(ckpts["lstm"])], checkpoints_dir=None, port=port)
    demo = launched["demo"]
    try:
        for i in range(8):
            assert "complete" in call_translate(f"http://127.0.0.1:{port}/", f"a man {i}")
        assert len(demo.server_app.state_holder.session_data) <= 3
    finally:
        demo.close()



@contextlib.contextmanager
def _counted_pieces(ckpts):
    """The served LSTM translator made slower (50 ms a piece), and the list that grows by one per piece run."""
    demo = server_demo[0]
    translator = demo.translator_app.registry.translator(demo.translator_app.registry.resolve(str(ckpts["lstm"])))
    pieces: list[int] = []
    translate = translator.translate

    def counting(*args, **kwargs):
        pieces.append(1)
        time.sleep(0.05)  # a slower model: the request would take many seconds
        return translate(*args, **kwargs)

    translator.translate = counting
    try:
        yield pieces
    finally:
        translator.translate = translate

def test_a_cancelled_api_request_stops_decoding(server, client, ckpts):
    """gradio_client's Job.cancel cancels the event: its remaining pieces never run."""
    with _counted_pieces(ckpts) as pieces:
        text = "\n".join(["a"] * 1000)  # the largest request: 1,000 lines at beam 16, over a hundred pieces
        job = client.submit(text, str(ckpts["lstm"]), "beam", 16, api_name="/translate")
        deadline = time.monotonic() + 60
        while not pieces and time.monotonic() < deadline:
            time.sleep(0.05)
        job.cancel()
        time.sleep(1.0)
        at_cancel = len(pieces)
        time.sleep(2.0)
        assert len(pieces) == at_cancel < 60  # nothing ran after the pieces in flight at the cancel
    assert isinstance(client.predict("a man", api_name="/translate"), str)  # still serving


def test_an_api_request_whose_client_disconnects_stops_decoding(server, ckpts):
    """A client that closes its event stream: Gradio marks the event not alive, and decoding stops."""
    import json
    import urllib.request

    with _counted_pieces(ckpts) as pieces:
        body = json.dumps({"data": ["\n".join(["a"] * 1000), str(ckpts["lstm"]), "beam", 16]}).encode()
        request = urllib.request.Request(f"{server}gradio_api/call/translate", body,
                                         {"Content-Type": "application/json"})
        event_id = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
        stream = urllib.request.urlopen(f"{server}gradio_api/call/translate/{event_id}", timeout=60)
        deadline = time.monotonic() + 60
        while not pieces and time.monotonic() < deadline:
            time.sleep(0.05)
        stream.close()  # the client goes away
        time.sleep(1.5)
        at_close = len(pieces)
        time.sleep(2.0)
        assert len(pieces) == at_close < 60
