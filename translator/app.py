"""Gradio app over translator checkpoints: a Translate tab (with attention heatmaps) and a Chat tab.

Models load once, on first use, and are shared by every request. Every problem a user can cause
(empty or over-long input, an unreadable checkpoint, bad decoding knobs) becomes a friendly message
in the UI or a `gr.Error` for API clients, never a stack trace. The functions behind the UI live on
`TranslatorApp` and work without a server.
"""
# No `from __future__ import annotations`: gr.api reads the API functions' annotations at runtime.
import dataclasses
import logging
import sys
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from matplotlib.figure import Figure

from translator.checkpoint import read_checkpoint
from translator.inference import Chatbot, Translator, _flatten_history
from translator.system import BUNDLE_KEY

log = logging.getLogger("translator.app")

TRAIN_HINT = "translator fit --config translator/configs/transformer.yaml"
CHAT_TRAIN_HINT = "translator fit --config translator/configs/chat_dailydialog.yaml"
CHAT_DATASETS = ("dailydialog", "chatbot-ko")
MAX_FOUND = 50  # checkpoints listed from checkpoints_dir; a training run can leave many
MAX_BEAM = 16
MAX_HISTORY_TURNS = 20  # API clients may send any history; more than this never reaches the model
EXAMPLES = [
    "Ein Mann fährt mit dem Fahrrad eine Straße entlang.",
    "Zwei Kinder spielen im Park mit einem roten Ball.",
    "Eine Frau mit einem grünen Hut steht vor einem Gebäude.",
    "Ein brauner Hund rennt durch das hohe Gras.",
]
ARCH_NOTES = {
    "Transformer": "The heatmap shows the last decoder layer's cross-attention, averaged over heads.",
    "AttentionSeq2Seq": "The heatmap shows where the decoder attended in the source for each output piece.",
    "LSTMSeq2Seq": ("**This LSTM model has no attention**: the encoder squeezes the whole source into one "
                    "fixed context vector, so there is no heatmap to show."),
}


class UserError(ValueError):
    """A problem with the request that the user can fix; its message is shown as is."""


# ---- checkpoints --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint the app offers: its label and metadata, or why it cannot be used."""

    path: Path
    label: str = ""
    architecture: str | None = None
    dataset: str | None = None
    src_lang: str | None = None
    tgt_lang: str | None = None
    error: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.dataset in CHAT_DATASETS

    def describe(self, chat: bool = False) -> str:
        """Markdown that says what this model is and (for translation) what its heatmap means."""
        if self.error:
            return f"⚠️ {self.error}"
        data = self.dataset or "unknown data"
        if chat:
            return f"Chatting with **{self.path.name}**: {self.architecture} trained on {data}."
        pair = f"{self.src_lang}→{self.tgt_lang}" if self.src_lang else "unknown languages"
        note = ARCH_NOTES.get(self.architecture or "", "")
        return f"**{self.path.name}**: {self.architecture}, {data} {pair}. {note}"


def read_info(path: str | Path, root: Path | None = None) -> CheckpointInfo:
    """Metadata of one checkpoint without building its model (mmap keeps the tensors on disk)."""
    path = Path(path)
    shown = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - legacy or broken files: the full reader gives the precise message
            checkpoint = None
        if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get(BUNDLE_KEY), dict)):
            checkpoint = read_checkpoint(path)  # raises FileNotFoundError / ValueError with a clear message
        bundle = checkpoint[BUNDLE_KEY]
        data = bundle.get("data") or {}
        architecture = str((bundle.get("model") or {}).get("class_path", "?")).rpartition(".")[2]
    except (OSError, ValueError) as err:
        return CheckpointInfo(path, f"{shown} · unreadable", error=str(err))
    pair = f"{data.get('src_lang')}→{data.get('tgt_lang')}" if data.get("src_lang") else "?"
    label = f"{shown} · {architecture} · {pair}"
    return CheckpointInfo(path, label, architecture, data.get("dataset"), data.get("src_lang"),
                          data.get("tgt_lang"))


def discover_checkpoints(root: str | Path | None) -> list[Path]:
    """Every `*.ckpt` under `root` (recursive): names with 'best' first, then 'last', newest first."""
    if root is None or not Path(root).is_dir():
        return []
    files = [p for p in Path(root).rglob("*.ckpt") if p.is_file()]

    def rank(p: Path) -> tuple[int, float]:
        name = p.stem.lower()
        return (0 if "best" in name else 1 if "last" in name else 2, -p.stat().st_mtime)

    return sorted(files, key=rank)[:MAX_FOUND]


class ModelRegistry:
    """The checkpoints the app offers; each model loads once, on first use, and is shared (thread-safe)."""

    def __init__(self, checkpoints: Sequence[str | Path] | str | None = None, chat_checkpoint: str | Path | None = None,
                 checkpoints_dir: str | Path | None = None, device: str = "cpu"):
        self.device = device
        if isinstance(checkpoints, (str, Path)):
            checkpoints = [checkpoints]
        given = [Path(p) for p in checkpoints or []]
        root = Path(checkpoints_dir) if checkpoints_dir else None
        found = [p for p in discover_checkpoints(root) if p.resolve() not in {g.resolve() for g in given}]
        given_infos = [read_info(p, root) for p in dict.fromkeys(given)]
        found_infos = [read_info(p, root) for p in found]
        # Found chat checkpoints belong to the Chat tab; given ones are offered wherever asked.
        self.translation = _unique_labels(given_infos + [i for i in found_infos if not i.is_chat])
        self.chat: CheckpointInfo | None = (read_info(chat_checkpoint, root) if chat_checkpoint else
                                            next((i for i in found_infos if i.is_chat and not i.error), None))
        self._lock = threading.Lock()
        self._loading: dict[tuple[Path, type], threading.Lock] = {}
        self._models: dict[tuple[Path, type], Translator] = {}
        self._failed: dict[tuple[Path, type], str] = {}

    @property
    def labels(self) -> list[str]:
        return [info.label for info in self.translation]

    @property
    def default(self) -> CheckpointInfo | None:
        """The first usable translation checkpoint (or the first listed one, to explain why none works)."""
        return next((i for i in self.translation if not i.error), self.translation[0] if self.translation else None)

    def resolve(self, choice: str | None) -> CheckpointInfo:
        """A listed checkpoint by label or path; '' or None = the default. Never loads unlisted files."""
        if not self.translation:
            raise UserError(f"No translation checkpoint is loaded. Train one with `{TRAIN_HINT}`.")
        if not choice or not str(choice).strip():
            return self.default
        choice = str(choice).strip()
        for info in self.translation:
            if choice in (info.label, str(info.path)) or _same_file(choice, info.path):
                return info
        raise UserError(f"Unknown checkpoint {choice[:200]!r}; choose one of: {', '.join(self.labels)}")

    def translator(self, info: CheckpointInfo) -> Translator:
        return self._get(info, Translator)

    def chatbot(self) -> Chatbot:
        if self.chat is None:
            raise UserError(f"No chat checkpoint is loaded. Train one with `{CHAT_TRAIN_HINT}` "
                            "and start the app with `--chat_checkpoint PATH`.")
        return self._get(self.chat, Chatbot)  # type: ignore[return-value]

    def _get(self, info: CheckpointInfo, cls: type[Translator]) -> Translator:
        if info.error:
            raise UserError(info.error)
        key = (info.path.resolve(), cls)
        with self._lock:
            if key in self._models:
                return self._models[key]
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:  # one load per model even when many requests arrive at once
            if key in self._models:
                return self._models[key]
            if key in self._failed:
                raise UserError(self._failed[key])
            try:
                model = cls.from_checkpoint(info.path, device=self.device)
            except (OSError, ValueError) as err:
                self._failed[key] = f"Cannot load {info.path}: {err}"
                raise UserError(self._failed[key]) from None
            with self._lock:
                self._models[key] = model
            return model


def _unique_labels(infos: list[CheckpointInfo]) -> list[CheckpointInfo]:
    """Labels must identify a checkpoint: clashing ones get their full path."""
    seen = [i.label for i in infos]
    return [dataclasses.replace(i, label=f"{i.path} · {i.label.split(' · ', 1)[-1]}") if seen.count(i.label) > 1
            else i for i in infos]


def _same_file(choice: str, path: Path) -> bool:
    try:
        return Path(choice).resolve() == path.resolve()
    except (OSError, ValueError):
        return False


# ---- plots --------------------------------------------------------------------------------------

def attention_figure(src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: torch.Tensor) -> Figure:
    """Heatmap of attention (T_out, S): one row per output piece, one column per source piece."""
    weights = attention.float().cpu().numpy()[: len(tgt_pieces), : len(src_pieces)]  # (T, S)
    rows, cols = weights.shape
    # A bare Figure (no pyplot): no global state shared between concurrent requests.
    fig = Figure(figsize=(min(3 + 0.45 * cols, 14), min(2 + 0.35 * rows, 12)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    ax.set_xticks(range(cols), labels=[_piece(p) for p in src_pieces[:cols]], rotation=60, ha="right")
    ax.set_yticks(range(rows), labels=[_piece(p) for p in tgt_pieces[:rows]])
    ax.set_xlabel("source pieces")
    ax.set_ylabel("output pieces")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention")
    return fig


def _piece(piece: str) -> str:
    """A SentencePiece piece as a tick label: '▁' marks a word start."""
    text = piece.replace("▁", " ").strip()
    return text if text else "▁"


# ---- the functions behind the UI and the API ----------------------------------------------------

@dataclasses.dataclass
class TranslateResult:
    """What the Translate tab shows: the text, an optional heatmap, and a markdown note."""

    text: str
    figure: Figure | None
    info: str
    error: str | None = None


class TranslatorApp:
    """Translate and chat with friendly messages for every user error; no server needed."""

    def __init__(self, registry: ModelRegistry, max_input_chars: int = 2000):
        if max_input_chars < 1:
            raise ValueError(f"max_input_chars must be >= 1, got {max_input_chars}")
        self.registry = registry
        self.max_input_chars = max_input_chars

    def check_text(self, text: Any, what: str = "sentence") -> str:
        """The text to use, or UserError for empty or over-long input (checked before any tokenizing)."""
        text = "" if text is None else str(text)
        if not text.strip():
            raise UserError(f"Type a {what} first: the input is empty.")
        if len(text) > self.max_input_chars:
            raise UserError(f"The input has {len(text):,} characters; this app takes at most "
                            f"{self.max_input_chars:,} per request. Shorten it, or translate files with "
                            "`translator translate`.")
        return text

    def translate_text(self, text: str, checkpoint: str | None = None, decoder: str = "greedy",
                       beam_size: int = 5) -> TranslateResult:
        """Translate `text` line by line; the heatmap is for the first non-empty line."""
        try:
            text = self.check_text(text)
            if decoder not in ("greedy", "beam"):
                raise UserError(f"Unknown decoder {decoder!r}; choose greedy or beam.")
            beam_size = _int_in(beam_size, "beam size", 1, MAX_BEAM)
            info = self.registry.resolve(checkpoint)
            translator = self.registry.translator(info)
            lines = text.splitlines()
            results = translator.translate(lines, return_attention=True, decoder=decoder, beam_size=beam_size)
        except UserError as err:
            return TranslateResult("", None, f"⚠️ {err}", error=str(err))
        except Exception:  # noqa: BLE001 - never a stack trace in the UI; the log has it
            log.exception("translation failed")
            message = "Something went wrong while translating this input; the server log has the details."
            return TranslateResult("", None, f"⚠️ {message}", error=message)
        notes = [info.describe()]
        first = next((r for r in results if r.src_pieces), None)
        figure = None
        if first is not None and first.attention is not None and first.tgt_pieces:
            figure = attention_figure(first.src_pieces, first.tgt_pieces, first.attention)
            if len([r for r in results if r.src_pieces]) > 1:
                notes.append("The heatmap is for the first line.")
        unk = translator.tokenizer.src.id_to_piece(translator.tokenizer.unk_id)
        unknown = sum(p == unk for r in results for p in r.src_pieces)
        if unknown:
            notes.append(f"{unknown} source piece(s) are unknown to this model's vocabulary "
                         "(characters it never saw in training).")
        if any(r.truncated for r in results):
            notes.append(f"A line was longer than the model's limit of {translator.max_src_tokens} tokens; "
                         "only its beginning was translated.")
        output = "\n".join(_printable(r.text) for r in results)
        if not output.strip():
            notes.append("The model produced an empty translation for this input.")
        return TranslateResult(output, figure, "\n\n".join(notes))

    def translate_ui(self, text: str, checkpoint: str | None, decoder: str, beam_size: float
                     ) -> tuple[str, Figure | None, str]:
        """The Translate button: (output text, heatmap or None, markdown note)."""
        result = self.translate_text(text, checkpoint, decoder, beam_size)
        if result.error:
            gr.Warning(result.error)
        return result.text, result.figure, result.info

    def describe_checkpoint(self, checkpoint: str | None) -> str:
        """The note shown when a checkpoint is picked: what it is, and whether it has attention."""
        try:
            return self.registry.resolve(checkpoint).describe()
        except UserError as err:
            return f"⚠️ {err}"

    def chat_reply(self, message: str, history: Sequence[Any] | None = None, decoder: str = "sample",
                   temperature: float = 0.8, top_k: int = 0, top_p: float = 0.9, beam_size: int = 5,
                   no_repeat_ngram_size: int = 3) -> str:
        """The chat model's reply to `message` after `history`; UserError for anything the user can fix."""
        message = self.check_text(message, "message").strip()
        if decoder not in ("sample", "beam", "greedy"):
            raise UserError(f"Unknown decoder {decoder!r}; choose sample, beam or greedy.")
        options = {"temperature": _float_in(temperature, "temperature", 0.05, 5.0),
                   "top_k": _int_in(top_k, "top-k", 0, 1000), "top_p": _float_in(top_p, "top-p", 0.01, 1.0),
                   "beam_size": _int_in(beam_size, "beam size", 1, MAX_BEAM),
                   "no_repeat_ngram_size": _int_in(no_repeat_ngram_size, "no-repeat n-gram size", 0, 10)}
        bot = self.registry.chatbot()
        turns = [t[-self.max_input_chars:] for t in _flatten_history(history or [])][-MAX_HISTORY_TURNS:]
        return _printable(bot.reply(turns, message, decoder=decoder, **options))

    def chat_respond(self, message: str, history: list[dict] | None, decoder: str = "sample",
                     temperature: float = 0.8, top_k: float = 0, top_p: float = 0.9, beam_size: float = 5,
                     no_repeat_ngram_size: float = 3) -> tuple[list[dict], str, str]:
        """The Send button: (new history, '' to clear the message box, markdown status)."""
        history = _plain_history(history)
        try:
            reply = self.chat_reply(message, history, decoder, temperature, top_k, top_p, beam_size,
                                    no_repeat_ngram_size)
        except UserError as err:
            gr.Warning(str(err))
            return history, "" if message is None else str(message), f"⚠️ {err}"
        except Exception:  # noqa: BLE001 - never a stack trace in the UI; the log has it
            log.exception("chat reply failed")
            text = "Something went wrong while replying; the server log has the details."
            gr.Warning(text)
            return history, str(message), f"⚠️ {text}"
        shown = reply if reply.strip() else "(the model replied with nothing; try sampling or a higher temperature)"
        history = [*history, {"role": "user", "content": str(message).strip()},
                   {"role": "assistant", "content": shown}]
        return history, "", ""

    # The API endpoints: typed (gr.api reads the hints), text in, text out, gr.Error for user errors.

    def api_translate(self, text: str, checkpoint: str = "", decoder: str = "greedy", beam_size: int = 5) -> str:
        """Translate text (one sentence per line); checkpoint: a label or path the app lists ('' = default)."""
        result = self.translate_text(text, checkpoint, decoder, beam_size)
        if result.error:
            raise gr.Error(result.error, print_exception=False)
        return result.text

    def api_chat(self, message: str, history: list | None = None, decoder: str = "sample", temperature: float = 0.8,
                 top_k: int = 0, top_p: float = 0.9, beam_size: int = 5, no_repeat_ngram_size: int = 3) -> str:
        """Reply to message; history: earlier turns as strings or {'role', 'content'} dicts (oldest first)."""
        try:
            return self.chat_reply(message, history, decoder, temperature, top_k, top_p, beam_size,
                                   no_repeat_ngram_size)
        except UserError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception:  # noqa: BLE001
            log.exception("chat reply failed")
            raise gr.Error("Something went wrong while replying; the server log has the details.",
                           print_exception=False) from None


def _printable(text: str) -> str:
    """Model output without control characters or U+FFFD (undertrained models emit stray byte pieces)."""
    return "".join(c for c in text if c != "\ufffd" and unicodedata.category(c) not in ("Cc", "Cs", "Co", "Cn")
                   ).strip()


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise UserError(f"The {name} must be a number, got {value!r}.") from None
    if not low <= number <= high:
        raise UserError(f"The {name} must be between {low} and {high}, got {number}.")
    return number


def _float_in(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"The {name} must be a number, got {value!r}.") from None
    if not low <= number <= high:  # also rejects NaN
        raise UserError(f"The {name} must be between {low} and {high}, got {number}.")
    return number


def _plain_history(history: Sequence[Any] | None) -> list[dict]:
    """Gradio's chat history as [{'role', 'content': str}] (it sends content as a list of parts)."""
    plain = []
    for item in history or []:
        if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
            text = _flatten_history([item])
            plain.append({"role": item["role"], "content": text[0] if text else ""})
    return plain


# ---- the Blocks ---------------------------------------------------------------------------------

def build_app(checkpoint: Sequence[str | Path] | str | None = None, chat_checkpoint: str | Path | None = None,
              checkpoints_dir: str | Path | None = None, max_input_chars: int = 2000, concurrency_limit: int = 2,
              device: str = "cpu", registry: ModelRegistry | None = None) -> gr.Blocks:
    """The Gradio Blocks with Translate and Chat tabs and the /translate and /chat endpoints (queued)."""
    if concurrency_limit < 1:
        raise ValueError(f"concurrency_limit must be >= 1, got {concurrency_limit}")
    registry = registry or ModelRegistry(checkpoint, chat_checkpoint, checkpoints_dir, device)
    app = TranslatorApp(registry, max_input_chars)
    # All model work shares one concurrency group, so at most `concurrency_limit` decodes run at once.
    limits = {"concurrency_limit": concurrency_limit, "concurrency_id": "models"}
    private: dict[str, Any] = {"api_visibility": "private"}
    with gr.Blocks(title="translator") as demo:
        gr.Markdown("# translator\nSeq2seq translation and chat with LSTM, attention and Transformer models.")
        with gr.Tabs():
            with gr.Tab("Translate", id="translate"):
                _translate_tab(app, limits, private)
            with gr.Tab("Chat", id="chat"):
                _chat_tab(app, limits, private)
        gr.api(app.api_translate, api_name="translate", **limits)
        gr.api(app.api_chat, api_name="chat", **limits)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=64)
    demo.translator_app = app  # type: ignore[attr-defined]  # tests and embedders reach the functions here
    return demo


def _translate_tab(app: TranslatorApp, limits: dict[str, Any], private: dict[str, Any]) -> None:
    registry = app.registry
    default = registry.default
    with gr.Row():
        with gr.Column():
            source = gr.Textbox(label="Source text", lines=4, placeholder="Ein Mann fährt Fahrrad.",
                                elem_id="source")
            model = gr.Dropdown(choices=registry.labels, value=default.label if default else None,
                                label="Checkpoint", elem_id="checkpoint")
            with gr.Row():
                decoder = gr.Radio(["greedy", "beam"], value="greedy", label="Decoder", elem_id="decoder")
                beam_size = gr.Slider(1, MAX_BEAM, value=5, step=1, label="Beam size", visible=False,
                                      elem_id="beam-size")
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
    button.click(app.translate_ui, [source, model, decoder, beam_size], [output, plot, info], **limits, **private)
    model.change(app.describe_checkpoint, [model], [info], queue=False, **private)
    decoder.change(lambda d: gr.Slider(visible=d == "beam"), [decoder], [beam_size], queue=False, **private)


def _chat_tab(app: TranslatorApp, limits: dict[str, Any], private: dict[str, Any]) -> None:
    chat = app.registry.chat
    if chat is None:
        gr.Markdown("No chat checkpoint is loaded. Train one on DailyDialog with\n\n"
                    f"    {CHAT_TRAIN_HINT}\n\nthen start the app with "
                    "`translator app --checkpoint CKPT --chat_checkpoint CHAT_CKPT`.", elem_id="chat-missing")
        return
    gr.Markdown(chat.describe(chat=True))
    chatbot = gr.Chatbot(label="Conversation", height=360, elem_id="chatbot")
    with gr.Row():
        message = gr.Textbox(placeholder="Say something…", show_label=False, lines=1, scale=4, elem_id="message")
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
    status = gr.Markdown("", elem_id="chat-status")
    clear = gr.Button("Clear conversation", elem_id="clear")
    with gr.Accordion("Decoding", open=False):
        decoder = gr.Radio(["sample", "beam", "greedy"], value="sample", label="Decoder")
        temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature (sampling)")
        top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (sampling; 0 = off)")
        top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p (sampling)")
        beam_size = gr.Slider(1, MAX_BEAM, value=5, step=1, label="Beam size (beam search)")
        no_repeat = gr.Slider(0, 6, value=3, step=1, label="No-repeat n-gram size (0 = off)")
    inputs = [message, chatbot, decoder, temperature, top_k, top_p, beam_size, no_repeat]
    for trigger in (send.click, message.submit):
        trigger(app.chat_respond, inputs, [chatbot, message, status], **limits, **private)
    clear.click(lambda: ([], "", ""), None, [chatbot, message, status], queue=False, **private)


def launch(checkpoint: list[str] | str | None = None, chat_checkpoint: str | None = None,
           checkpoints_dir: str | None = "checkpoints", host: str = "127.0.0.1", port: int = 7860,
           share: bool = False, max_input_chars: int = 2000, concurrency_limit: int = 2,
           device: str = "cpu") -> None:
    """Serve the translator web app: a Translate tab with attention heatmaps and a Chat tab.

    Args:
        checkpoint: Translation checkpoint to offer, or a list "[a.ckpt, b.ckpt]"; every *.ckpt under
            checkpoints_dir is offered too.
        chat_checkpoint: Checkpoint trained on a chat dataset (e.g. dailydialog) for the Chat tab; default: the
            first chat checkpoint found under checkpoints_dir.
        checkpoints_dir: Folder searched recursively for *.ckpt files (best/last first); null to search nowhere.
        host: Address to listen on; the default serves this machine only. Use 0.0.0.0 to serve your network.
        port: TCP port to listen on.
        share: Also open a public gradio.live link (anyone with the link can use the app).
        max_input_chars: Longest input (characters) one request may send; longer input gets a message.
        concurrency_limit: How many translations/replies may run at the same time; others wait in the queue.
        device: Torch device for the models, e.g. cpu or cuda.
    """
    registry = ModelRegistry(checkpoint, chat_checkpoint, checkpoints_dir, device)
    usable = [i for i in [*registry.translation, registry.chat] if i is not None and not i.error]
    if not usable:
        reasons = "".join(f"\n  {i.error}" for i in [*registry.translation, registry.chat] if i is not None)
        where = f" and none found under {checkpoints_dir}/" if checkpoints_dir else ""
        raise ValueError(f"no usable checkpoint given{where}.{reasons}\nTrain one with `{TRAIN_HINT}` "
                         "and start the app with `translator app --checkpoint PATH`.")
    for info in [*registry.translation, registry.chat]:
        if info is not None and info.error:
            print(f"translator app: warning: {info.error}", file=sys.stderr)
    demo = build_app(max_input_chars=max_input_chars, concurrency_limit=concurrency_limit, registry=registry)
    demo.launch(server_name=host, server_port=port, share=share, show_error=False)
