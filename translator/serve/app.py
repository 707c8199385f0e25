"""Gradio app over translator checkpoints: a Translate tab (with attention heatmaps), a Chat tab and a Learn tab.

Only the Gradio layer lives here: layout, and mapping `UserError` to warnings in the UI or
`gr.Error` for API clients. What the app can do (checkpoints, the model cache, translate and
reply) is `translator.serve.service`, which knows nothing of Gradio.
"""
# No `from __future__ import annotations`: gr.api reads the API functions' annotations at runtime.
import errno
import functools
import inspect
import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import anyio.to_thread
import gradio as gr
from matplotlib.figure import Figure

from translator.decoding import DecodeConfig
from translator.inference.chatbot import flatten_history
from translator.serve.learn import VIEWS, LearnService
from translator.serve.service import (CANCELLED, CHAT_TRAIN_HINT, MAX_BEAM, REQUEST_TIME_LIMIT, TRAIN_HINT, ChatTurn,
                                      CheckpointInfo, ModelCache, ModelRegistry, TranslatorService, UserError,
                                      discover_checkpoints, printable, read_info)

__all__ = ["CHAT_TRAIN_HINT", "TRAIN_HINT", "CheckpointInfo", "ModelCache", "ModelRegistry", "TranslatorApp",
           "UserError", "build_app", "discover_checkpoints", "launch", "read_info"]

log = logging.getLogger("translator.app")

#: Sessions whose state Gradio keeps (gradio/state_holder.py; its default is 10,000). Every API call is a
#: session of its own, and each keeps a copy of every component's config, ~130 KB here: over 3,000 requests
#: the default let RSS grow by ~130 KB a request. This app keeps nothing in gr.State, so a few hundred
#: recent sessions are plenty.
SESSION_CAPACITY = 200

EXAMPLES = [
    "Ein Mann fährt mit dem Fahrrad eine Straße entlang.",
    "Zwei Kinder spielen im Park mit einem roten Ball.",
    "Eine Frau mit einem grünen Hut steht vor einem Gebäude.",
    "Ein brauner Hund rennt durch das hohe Gras.",
]


def option_slider(name: str, value: Any, label: str, **kwargs: Any) -> gr.Slider:
    """A slider over the range a request may ask for decoding option `name` (its DecodeConfig field's bounds)."""
    low, high, _ = DecodeConfig.served(name)
    step = 1 if isinstance(low, int) and isinstance(high, int) else 0.01
    return gr.Slider(low, high, value=value, step=step, label=label, **kwargs)


# ---- the handlers: service results -> Gradio outputs --------------------------------------------

class TranslatorApp(TranslatorService):
    """The service plus the Gradio handlers: user errors become a warning and a note, never a trace."""

    def translate_ui(self, text: str, checkpoint: str | None, decoder: str, beam_size: float
                     ) -> tuple[str, Figure | None, str]:
        """The Translate button: (output text, heatmap or None, markdown note)."""
        result = self.translate_text(text, checkpoint, decoder, beam_size)
        if result.error:
            gr.Warning(result.error)
        return result.text, result.figure, result.info

    def chat_stream_ui(self, message: str, history: list[dict] | None, method: str | None = None,
                       temperature: float | None = None, top_p: float | None = None, lm_weight: float | None = None,
                       candidates: float | None = None, beam_size: float | None = None,
                       backward_weight: float | None = None) -> Iterator[tuple[Any, ...]]:
        """The Send button, streaming: (history, message box, status, candidates table, score formula) after
        every sampling step (the first candidate grows in the chat; the table shows all of them), then the
        chosen reply and every candidate with its scores."""
        history = self.fit_history(_plain_history(history))
        user = {"role": "user", "content": str(message or "").strip()}
        options = dict(method=method, temperature=temperature, top_p=top_p, lm_weight=lm_weight,
                       candidates=candidates, beam_size=beam_size, backward_weight=backward_weight)
        try:
            for update in self.chat_stream(message, history, **options):
                if isinstance(update, ChatTurn):
                    shown = update.reply or "(the model has no reply to this; try sampling or another message)"
                    # the conversation stays within what the next request may carry (oldest turns go first)
                    yield (self.fit_history([*history, user, {"role": "assistant", "content": shown}]), "", "",
                           gr.Dataframe(value=update.rows(), headers=list(ChatTurn.HEADERS)), update.formula)
                    return
                texts = [printable(t) for t in update]
                note = (f"Sampling {len(texts)} candidates: the first is shown while they are generated; re-ranking "
                        "then picks one." if len(texts) > 1 else "Sampling…")
                rows = [["", t, "-", "-", "-", "-", "-"] for t in texts]
                yield ([*history, user, {"role": "assistant", "content": (texts[0] if texts else "") + " ▌"}], "",
                       note, gr.Dataframe(value=rows, headers=list(ChatTurn.HEADERS)), "")
        except UserError as err:
            gr.Warning(str(err))
            yield history, "" if message is None else str(message), f"⚠️ {err}", gr.skip(), gr.skip()
        except Exception:  # noqa: BLE001 - never a stack trace in the UI; the log has it
            log.exception("chat reply failed")
            text = "Something went wrong while replying; the server log has the details."
            gr.Warning(text)
            yield history, str(message), f"⚠️ {text}", gr.skip(), gr.skip()

    # Validators: run by Gradio before a request enters the queue, so invalid requests never wait or count
    # toward the queue limit (cheap checks only: no model is loaded here).

    def validate_translate(self, text: Any, checkpoint: Any = "", decoder: Any = "greedy", beam_size: Any = 5
                           ) -> list[dict]:
        return validation(4, lambda: self.check_translate(text, checkpoint, decoder, beam_size))

    def validate_chat(self, message: Any, history: Any = None, method: Any = None, temperature: Any = None,
                      top_p: Any = None, lm_weight: Any = None, candidates: Any = None, beam_size: Any = None,
                      backward_weight: Any = None) -> list[dict]:
        """The Chat tab's inputs, in `chat_stream_ui`'s order (the backward weight only with a backward model)."""
        return validation(8 if backward_weight is None else 9, lambda: self.check_chat(
            message, history, method, temperature, top_p, lm_weight, beam_size, candidates,
            backward_weight=backward_weight))

    def validate_api_chat(self, message: Any, history: Any = None, decoder: Any = "", temperature: Any = -1.0,
                          top_k: Any = -1, top_p: Any = -1.0, beam_size: Any = -1, no_repeat_ngram_size: Any = -1,
                          lm_weight: Any = -1.0, candidates: Any = -1) -> list[dict]:
        """The /chat endpoint's inputs, in `api_chat`'s order."""
        return validation(10, lambda: self.check_chat(
            message, history, given(decoder), given(temperature), given(top_p), given(lm_weight), given(beam_size),
            given(candidates), given(top_k), given(no_repeat_ngram_size)))

    # The API endpoints: typed (gr.api reads the hints), text in, text out, gr.Error for user errors.

    def api_translate(self, text: str, checkpoint: str = "", decoder: str = "greedy", beam_size: int = 5) -> str:
        """Translate text (one sentence per line); checkpoint: a label or path the app lists ('' = default)."""
        result = self.translate_text(text, checkpoint, decoder, beam_size, figure=False)
        if result.error:
            raise gr.Error(result.error, print_exception=False)
        return result.text

    def api_chat(self, message: str, history: Optional[list] = None, decoder: Optional[str] = None,
                 temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 beam_size: Optional[int] = None, no_repeat_ngram_size: Optional[int] = None,
                 lm_weight: Optional[float] = None, candidates: Optional[int] = None) -> str:
        """Reply to message; history: earlier turns as strings or {'role', 'content'} dicts (oldest first).

        Decoding options left out (null) keep the chat model's defaults (sampling + anti-LM re-ranking).
        """
        try:
            return self.chat_reply(message, history, decoder, temperature, top_p, lm_weight, beam_size, candidates,
                                   top_k, no_repeat_ngram_size)
        except UserError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception:  # noqa: BLE001
            log.exception("chat reply failed")
            raise gr.Error("Something went wrong while replying; the server log has the details.",
                           print_exception=False) from None


def given(value: Any) -> Any:
    """An /chat option as sent: '' or a negative number = the model's default (None)."""
    return None if value in ("", None) or (isinstance(value, (int, float)) and value < 0) else value


def validation(count: int, check: Callable[[], Any]) -> list[dict]:
    """A Gradio validator's answer for `count` inputs: `check()`'s UserError on the first, or all valid."""
    try:
        check()
    except UserError as err:
        return [gr.validate(False, str(err))] + [gr.validate(True, "")] * (count - 1)
    return [gr.validate(True, "")] * count


def cancellable(handler: Callable[..., Any]) -> Callable[..., Any]:
    """`handler` as a Gradio event function whose decoding stops within one piece of work when nobody waits
    for it any more: when Gradio cancels the event (a `cancels=` listener, gradio_client's `Job.cancel`: the
    event's task is cancelled), or when its client goes away (`client_gone`).

    The handler runs on a thread (as Gradio runs plain functions) with `CANCELLED` set for the scheduler to
    ask; the event function takes Gradio's `gr.Request` besides the handler's own parameters.
    """
    signature = inspect.signature(handler)
    request_param = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                      annotation=gr.Request)
    with_request = signature.replace(parameters=[*signature.parameters.values(), request_param])

    async def event(*args: Any, **kwargs: Any) -> Any:
        bound = with_request.bind(*args, **kwargs)
        request = bound.arguments.pop("request", None)
        stopped = threading.Event()
        gone = client_gone(request)

        def run() -> Any:
            token = CANCELLED.set(lambda: stopped.is_set() or gone())
            try:
                return handler(*bound.args, **bound.kwargs)
            finally:
                CANCELLED.reset(token)

        try:
            return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
        except BaseException:  # cancelled (or failed): no piece of this request runs after this
            stopped.set()
            raise

    event.__signature__ = with_request  # type: ignore[attr-defined]  # what Gradio reads to pass its arguments
    event.__annotations__ = {name: param.annotation for name, param in with_request.parameters.items()
                             if param.annotation is not inspect.Parameter.empty}
    if with_request.return_annotation is not inspect.Signature.empty:
        event.__annotations__["return"] = with_request.return_annotation
    event.__name__ = getattr(handler, "__name__", "event")
    event.__doc__ = handler.__doc__
    return event


def client_gone(request: Any) -> Callable[[], bool]:
    """Whether the client of the event behind `request` has gone away. Gradio marks a running event
    `alive = False` when its client's event stream disconnects, and `closed` when its browser tab closes
    (gradio/queueing.py `clean_events`, routes.py `heartbeat`); it stops a generator on that, a plain
    function must ask. Never gone when there is no queue to ask (a direct call)."""
    session = getattr(request, "session_hash", None)
    app = getattr(getattr(request, "request", None), "app", None)
    queue = getattr(app.get_blocks(), "_queue", None) if hasattr(app, "get_blocks") else None
    if session is None or queue is None:
        return lambda: False

    def gone() -> bool:
        events = [e for job in list(queue.active_jobs) if job for e in job if e.session_hash == session]
        return bool(events) and all(not e.alive or e.closed for e in events)

    return gone


def learn_ui(learn: LearnService, key: str, checkpoint: str | None, text: str, prefix: str, temperature: float,
             top_k: float, top_p: float, beam_size: float) -> tuple[Any, Any, str, str]:
    """A Learn button: (figure or None, table update, what to look for + note, the CLI command)."""
    view = next(v for v in VIEWS if v.key == key)
    head = f"### {view.title}\n*{view.idea}*\n\n{view.look_for}"
    try:
        result = learn.show(key, checkpoint, text, prefix, temperature, top_k, top_p, beam_size)
    except UserError as err:
        gr.Warning(str(err))
        return None, gr.Dataframe(visible=False), f"{head}\n\n⚠️ {err}", f"`{view.command}`"
    except Exception:  # noqa: BLE001 - never a stack trace in the UI; the log has it
        log.exception("learn view %s failed", key)
        text = "Something went wrong while making this view; the server log has the details."
        gr.Warning(text)
        return None, gr.Dataframe(visible=False), f"{head}\n\n⚠️ {text}", f"`{view.command}`"
    table = gr.Dataframe(visible=False)
    if result.table is not None:
        header, rows = result.table
        table = gr.Dataframe(value=rows, headers=header, visible=True)
    return result.figure, table, f"{head}\n\n{result.note}", f"Same view from the command line: `{view.command}`"


def _plain_history(history: Sequence[Any] | None) -> list[dict]:
    """Gradio's chat history as [{'role', 'content': str}] (it sends content as a list of parts)."""
    plain = []
    for item in history or []:
        if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
            text = flatten_history([item])
            plain.append({"role": item["role"], "content": text[0] if text else ""})
    return plain


# ---- the Blocks ---------------------------------------------------------------------------------

def build_app(checkpoint: Sequence[str | Path] | str | None = None, chat_checkpoint: str | Path | None = None,
              checkpoints_dir: str | Path | None = None, max_input_chars: int = 2000, concurrency_limit: int = 2,
              device: str = "cpu", registry: ModelRegistry | None = None,
              lab_dir: str | Path | None = None, request_time_limit: float = REQUEST_TIME_LIMIT,
              backward: str | Path | None = None) -> gr.Blocks:
    """The Gradio Blocks with Translate, Chat and Learn tabs and the /translate and /chat endpoints (queued).

    `concurrency_limit` decoding workers are shared fairly by all requests (translator.serve.scheduling): a long
    request is decoded a few sentences at a time, so it cannot hold every worker. Invalid requests are
    refused before they are queued.
    """
    if concurrency_limit < 1:
        raise ValueError(f"concurrency_limit must be >= 1, got {concurrency_limit}")
    registry = registry or ModelRegistry(checkpoint, chat_checkpoint, checkpoints_dir, device, chat_backward=backward)
    app = TranslatorApp(registry, max_input_chars, workers=concurrency_limit, time_limit=request_time_limit)
    learn = LearnService(registry, lab_dir, service=app)  # the Learn views share the decoding workers
    # Handlers mostly wait for the shared decoding workers, so more of them may be in flight than there are
    # workers: a new request reaches the fair scheduler at once instead of waiting in Gradio's queue.
    limits = {"concurrency_limit": max(16, 4 * concurrency_limit), "concurrency_id": "models"}
    private: dict[str, Any] = {"api_visibility": "private"}
    with gr.Blocks(title="translator") as demo:
        gr.Markdown("# translator\nSeq2seq translation and chat with LSTM, attention and Transformer models.")
        with gr.Tabs():
            with gr.Tab("Translate", id="translate"):
                _translate_tab(app, limits, private)
            with gr.Tab("Chat", id="chat"):
                _chat_tab(app, limits, private)
            with gr.Tab("Learn", id="learn"):
                _learn_tab(learn, registry, limits, private)
        gr.api(cancellable(app.api_translate), api_name="translate", **limits)
        gr.api(cancellable(app.api_chat), api_name="chat", **limits)
    # gr.api takes no validator argument; its BlockFunction runs one like any event's (gradio/queueing.py).
    for function in demo.fns.values():
        if function.api_name == "translate":
            function.validator = app.validate_translate
        elif function.api_name == "chat":
            function.validator = app.validate_api_chat
    demo.queue(default_concurrency_limit=limits["concurrency_limit"], max_size=64)
    demo.translator_app = app  # type: ignore[attr-defined]  # tests and embedders reach the functions here
    return demo


def _translate_tab(app: TranslatorApp, limits: dict[str, Any], private: dict[str, Any]) -> None:
    registry = app.registry
    default = registry.default
    with gr.Row():
        with gr.Column():
            source = gr.Textbox(label="Source text", lines=4, placeholder="Ein Mann fährt Fahrrad.",
                                elem_id="source")
            model = gr.Dropdown(choices=registry.choices, value=default.label if default else None,
                                label="Checkpoint", elem_id="checkpoint")
            with gr.Row():
                decoder = gr.Radio(["greedy", "beam"], value="greedy", label="Decoder", elem_id="decoder")
                beam_size = option_slider("beam_size", 5, "Beam size", visible=False, elem_id="beam-size")
            button = gr.Button("Translate", variant="primary", elem_id="translate-button")
            gr.Examples([[s] for s in EXAMPLES], inputs=[source], label="Examples (Multi30k-style German captions)",
                        api_visibility="private")
        with gr.Column():
            output = gr.Textbox(label="Translation", lines=4, interactive=False, elem_id="translation")
            if default is not None:
                info = gr.Markdown(default.describe(), elem_id="translate-info")
            else:
                info = gr.Markdown(f"⚠️ No translation checkpoint is loaded. Train one with `{TRAIN_HINT}` and "
                                   "start the app with `translator app --checkpoint PATH`.", elem_id="translate-info")
            plot = gr.Plot(label="Attention (rows: output pieces, columns: source pieces)", format="png",
                           elem_id="attention")
    button.click(cancellable(app.translate_ui), [source, model, decoder, beam_size], [output, plot, info], **limits,
                 **private, validator=app.validate_translate)
    model.change(app.describe_checkpoint, [model], [info], queue=False, **private)
    decoder.change(lambda d: gr.Slider(visible=d == "beam"), [decoder], [beam_size], queue=False, **private)


def _learn_tab(learn: LearnService, registry: ModelRegistry, limits: dict[str, Any], private: dict[str, Any]) -> None:
    gr.Markdown("Each button shows one idea of the RNN → LSTM → attention → Transformer story on the loaded "
                "checkpoints, with what to look for. Views that need training show a `translator lab` run's results.")
    default = registry.default
    with gr.Row():
        model = gr.Dropdown(choices=registry.labels, value=default.label if default else None, label="Checkpoint",
                            elem_id="learn-checkpoint", scale=2)
        text = gr.Textbox(label="Source sentence", value=EXAMPLES[0], elem_id="learn-text", scale=3)
    with gr.Accordion("Options (softmax, beam search)", open=False):
        with gr.Row():
            prefix = gr.Textbox(label="Prefix already written (softmax)", value="A man", elem_id="learn-prefix")
            temperature = gr.Slider(0.1, 3.0, value=1.0, step=0.1, label="Temperature")
            top_k = gr.Slider(0, 50, value=10, step=1, label="Top-k (0 = off)")
            top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p (1 = off)")
            beam_size = gr.Slider(1, MAX_BEAM, value=4, step=1, label="Beam size K")
    with gr.Row():
        buttons = {v.key: gr.Button(v.title, elem_id=f"learn-{v.key}", size="sm") for v in VIEWS}
    note = gr.Markdown("Pick a view.", elem_id="learn-note")
    plot = gr.Plot(format="png", elem_id="learn-plot", show_label=False)
    table = gr.Dataframe(visible=False, interactive=False, wrap=True, elem_id="learn-table")
    command = gr.Markdown("", elem_id="learn-command")
    inputs = [model, text, prefix, temperature, top_k, top_p, beam_size]
    for key, button in buttons.items():
        button.click(cancellable(functools.partial(learn_ui, learn, key)), inputs, [plot, table, note, command],
                     **limits, **private,
                     validator=lambda *args, key=key: validation(len(args), lambda: learn.check(key, *args)))


def _chat_tab(app: TranslatorApp, limits: dict[str, Any], private: dict[str, Any]) -> None:
    chat = app.registry.chat
    if chat is None:
        gr.Markdown("No chat checkpoint is loaded. Train one on DailyDialog with\n\n"
                    f"    {CHAT_TRAIN_HINT}\n\nthen start the app with "
                    "`translator app --checkpoint CKPT --chat_checkpoint CHAT_CKPT`.", elem_id="chat-missing")
        return
    try:
        settings = app.chat_settings()
    except UserError as err:
        gr.Markdown(f"⚠️ {err}", elem_id="chat-missing")
        return
    d = settings.decoding
    gr.Markdown(f"{chat.describe(chat=True)} It speaks **{settings.language_name}**. {settings.context_note}",
                elem_id="chat-info")
    chatbot = gr.Chatbot(label="Conversation", height=360, elem_id="chatbot")
    with gr.Row():
        message = gr.Textbox(placeholder=settings.placeholder, show_label=False, lines=1, scale=4, elem_id="message")
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
    status = gr.Markdown("", elem_id="chat-status")
    if settings.examples:
        gr.Examples([[m] for m in settings.examples], inputs=[message],
                    label=f"Examples ({settings.language_name})", api_visibility="private")
    clear = gr.Button("Clear conversation", elem_id="clear")
    candidates_table, formula = _chat_candidates(settings)
    with gr.Accordion("Decoding (defaults chosen on the validation split)", open=True):
        backward_term = (f" + {d.backward_weight} · log p(context | reply) (MMI-bidi, backward model "
                         f"{settings.backward})" if settings.backward else "")
        gr.Markdown(f"Default: **{d.method}** of {d.num_candidates} candidate replies (temperature {d.temperature}, "
                    f"top-p {d.top_p}), re-ranked by log p(reply | context){backward_term} − {d.lm_weight} · "
                    f"log p(reply) + {d.length_bonus} · length (anti-LM: fewer generic replies).",
                    elem_id="chat-decoding")
        with gr.Row():
            method = gr.Radio(["sample", "beam", "greedy"], value=d.method, label="Method", elem_id="chat-method")
            candidates = option_slider("candidates", d.num_candidates, "Candidates (samples or beams re-ranked)")
        with gr.Row():
            temperature = option_slider("temperature", d.temperature, "Temperature (sampling)")
            top_p = option_slider("top_p", d.top_p, "Top-p (sampling)")
            lm_weight = option_slider("lm_weight", d.lm_weight, "Anti-LM weight λ (0 = off)")
            beam_size = option_slider("beam_size", d.beam_size, "Beam size (beam search)")
        inputs = [message, chatbot, method, temperature, top_p, lm_weight, candidates, beam_size]
        if settings.backward:
            inputs.append(option_slider("backward_weight", d.backward_weight, "Backward weight β (MMI-bidi, 0 = off)",
                                        elem_id="chat-backward-weight"))
    for trigger in (send.click, message.submit):
        trigger(app.chat_stream_ui, inputs, [chatbot, message, status, candidates_table, formula], **limits,
                **private, validator=app.validate_chat)
    clear.click(lambda: ([], "", "", None, ""), None, [chatbot, message, status, candidates_table, formula],
                queue=False, **private)


def _chat_candidates(settings: Any) -> tuple[gr.Dataframe, gr.Markdown]:
    """The 'why this reply' table: every candidate with its forward, backward and anti-LM log-probabilities,
    its length and the total re-ranking score (filled while sampling, scored when the reply is chosen)."""
    with gr.Accordion("Why this reply: the candidates and their scores", open=True):
        gr.Markdown("Each candidate is scored by log p(r|c) (the chat model), log p(c|r) (the backward model, "
                    "when loaded: does the reply explain the message?) and log p(r) (the same model with no "
                    "context: how likely the reply is whatever was said); the ✓ row has the highest total.")
        formula = gr.Markdown("", elem_id="chat-formula")
        table = gr.Dataframe(headers=list(ChatTurn.HEADERS), interactive=False, wrap=True, elem_id="chat-candidates")
    return table, formula


def launch(checkpoint: list[str] | str | None = None, chat_checkpoint: str | None = None,
           checkpoints_dir: str | None = "checkpoints", host: str = "127.0.0.1", port: int = 7860,
           share: bool = False, max_input_chars: int = 2000, concurrency_limit: int = 2,
           device: str = "cpu", lab_dir: str | None = None, request_time_limit: float = REQUEST_TIME_LIMIT,
           auth: str | None = None, backward: str | None = None) -> None:
    """Serve the translator web app: a Translate tab with attention heatmaps, a Chat tab and a Learn tab.

    Args:
        checkpoint: Translation checkpoint to offer, or a list "[a.ckpt, b.ckpt]" (repeat --checkpoint);
            two or more that share a tokenizer are offered as their ensemble too; every *.ckpt under
            checkpoints_dir is offered as well.
        chat_checkpoint: Checkpoint trained on a chat dataset (e.g. dailydialog) for the Chat tab; default: the
            first chat checkpoint found under checkpoints_dir.
        checkpoints_dir: Folder searched recursively for *.ckpt files (best/last first); null to search nowhere.
        host: Address to listen on; the default serves this machine only. Use 0.0.0.0 to serve your network.
        port: TCP port to listen on.
        share: Also open a public gradio.live link (anyone with the link can use the app).
        max_input_chars: Longest input (characters) one request may send; longer input gets a message.
        concurrency_limit: Decoding workers: how many pieces of work (a few sentences each) run at the same time;
            every request gets its share, so a long request cannot hold them all.
        device: Torch device for the models, e.g. cpu or cuda.
        lab_dir: Folder of `translator lab` results (NAME.json) for the Learn tab's views that need training;
            default: the repository's benchmarks/lab/.
        request_time_limit: Seconds one request may decode before it is stopped with a message.
        auth: Ask for a login: USER:PASSWORD, or a file with one USER:PASSWORD a line (# comments); without it,
            anyone who reaches host:port can use the app.
        backward: The chat model's backward model (a .ckpt trained with --data.reverse true on its tokenizer): the
            Chat tab re-ranks replies by MMI-bidi and shows log p(message | reply) for every candidate.
    """
    credentials = read_auth(auth) if auth else None  # a bad --auth is one message, before any model loads
    registry = ModelRegistry(checkpoint, chat_checkpoint, checkpoints_dir, device, chat_backward=backward)
    usable = [i for i in [*registry.translation, registry.chat] if i is not None and not i.error]
    if not usable:
        reasons = "".join(f"\n  {i.error}" for i in [*registry.translation, registry.chat] if i is not None)
        where = f" and none found under {checkpoints_dir}/" if checkpoints_dir else ""
        raise ValueError(f"no usable checkpoint given{where}.{reasons}\nTrain one with `{TRAIN_HINT}` "
                         "and start the app with `translator app --checkpoint PATH`.")
    for info in [*registry.translation, registry.chat]:
        if info is not None and info.error:
            print(f"translator app: warning: {info.error}", file=sys.stderr)
    check_port(host, port)  # a busy port is one message, before any model loads
    if credentials is None and (share or not is_loopback(host)):
        where = "a public gradio.live link" if share else f"{host}:{port}"
        print(f"translator app: warning: serving on {where} without --auth: anyone who can reach it can use the "
              "app; pass --auth USER:PASSWORD (or a file of such lines)", file=sys.stderr)
    if backward:  # a backward model that does not fit the chat model is refused now, not at the first message
        if registry.chat is None:
            raise ValueError(f"--backward {backward} re-ranks a chat model's replies, but no chat model is loaded; "
                             "give --chat_checkpoint CKPT")
        registry.chatbot()  # UserError (a ValueError) with check_backward's message
    demo = build_app(max_input_chars=max_input_chars, concurrency_limit=concurrency_limit, registry=registry,
                     lab_dir=lab_dir, request_time_limit=request_time_limit)
    try:
        demo.launch(server_name=host, server_port=port, share=share, show_error=False, auth=credentials,
                    state_session_capacity=SESSION_CAPACITY)
    except OSError as err:  # the port was taken in the meantime, or the host is not an address of this machine
        raise ValueError(f"cannot serve on {host}:{port}: {' '.join(str(err).split())}") from None


def read_auth(auth: str) -> list[tuple[str, str]]:
    """Gradio's `auth` from --auth: one USER:PASSWORD, or a file of such lines (blank and # lines skipped)."""
    path = Path(auth)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"--auth: cannot read {path}: {err}") from None
        where = [(f"{path}:{n}", line.strip()) for n, line in enumerate(lines, 1)
                 if line.strip() and not line.strip().startswith("#")]
        if not where:
            raise ValueError(f"--auth: {path} has no USER:PASSWORD line")
    elif ":" in auth:
        where = [("--auth", auth)]
    else:
        raise ValueError(f"--auth: expected USER:PASSWORD or a file of such lines; {auth[:200]!r} is neither")
    pairs = []
    for place, line in where:
        user, _, password = line.partition(":")
        if not user.strip() or not password:
            raise ValueError(f"{place}: expected USER:PASSWORD with both parts non-empty")
        pairs.append((user.strip(), password))
    return pairs


def is_loopback(host: str) -> bool:
    """Whether `host` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """ValueError when `port` is not a TCP port, or `host:port` is taken or cannot be bound here."""
    if not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(f"cannot serve on {host!r}: {err.strerror or err}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            reason = "is already in use (another `translator app`?)" if err.errno == errno.EADDRINUSE else \
                f"cannot be used ({err.strerror or err})"
            raise ValueError(f"port {port} on {host} {reason}; pass --port N for another one") from None
