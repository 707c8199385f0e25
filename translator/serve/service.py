"""What the app offers, without Gradio: which checkpoints, the models loaded once, and the two
requests (translate text, reply to a chat message) with a `UserError` for anything a user can fix.

The Gradio layer (`translator.app`) only lays out components and maps `UserError` to the UI; an
embedder or a test can use `TranslatorService` directly.
"""
from __future__ import annotations

import contextvars
import dataclasses
import logging
import math
import queue
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from translator.artifacts.checkpoint import EXPORT_FILE, CheckpointMeta
from translator.decoding import DecodeConfig, decode_config, length_limit
from translator.engines.ct2 import CT2Model
from translator.engines.ensemble import ensemble_of
from translator.evaluation.plots import attention_figure
from translator.inference.chatbot import Chatbot, ReplyCandidate, flatten_history
from translator.inference.translator import Translation, Translator
from translator.serve.scheduling import FairScheduler, RequestCancelled, RequestTimeout, pieces_by_cost
from translator.tasks import TRANSLATION, Task

log = logging.getLogger("translator.service")

TRAIN_HINT = "translator fit --config translator/configs/transformer.yaml"
CHAT_TRAIN_HINT = "translator fit --config translator/configs/chat_dailydialog.yaml"
MAX_FOUND = 50  # checkpoints listed from checkpoints_dir; a training run can leave many
MAX_BEAM = DecodeConfig.served("beam_size")[1]  # the bounds live on the DecodeConfig fields
MAX_CANDIDATES = DecodeConfig.served("candidates")[1]
#: Limits of every request field, checked before a request is queued (a longer field gets a message naming it).
MAX_HISTORY_TURNS = 100  # turns of chat history a request may carry (the Chat tab keeps its conversation within)
HISTORY_CHARS_PER_INPUT = 10  # characters of chat history a request may carry, in units of max_input_chars
MAX_FIELD_CHARS = 1000  # a checkpoint label or path, a decoder name
MAX_BACKWARD_WEIGHT = DecodeConfig.served("backward_weight")[1]
#: Largest request, in decoded hypothesis-tokens (sum over lines of beam x output length limit): 1,000
#: one-word lines at the largest beam fit; more lines (a raised --max_input_chars) get a message.
MAX_REQUEST_COST = 256_000
#: Cost of one piece of work (a few sentences) that a decoding worker runs before it picks the next
#: piece, from the least-served request (translator.serve.scheduling): about 0.2 s for the 7.6M Transformer on
#: one core, so a one-sentence request waits at most that long behind long ones.
PIECE_COST = 1024
REQUEST_TIME_LIMIT = 300.0  # seconds a request may decode before it is stopped with a message
#: Example messages for the Chat tab, by the language the chat model speaks.
CHAT_EXAMPLES = {
    "en": ["Hi, how are you doing today?", "Thank you so much for your help!", "What do you do for a living?",
           "Do you want to go to the movies tonight?", "I'm looking for a bank near here."],
    "ko": ["안녕하세요", "여자친구랑 헤어졌어", "오늘 날씨 정말 좋다", "요즘 잠이 안 와", "주말에 뭐 하지?"],
}
CHAT_PLACEHOLDERS = {"en": "Say something…", "ko": "메시지를 입력하세요…"}
LANGUAGE_NAMES = {"en": "English", "ko": "Korean", "de": "German", "fr": "French"}


class UserError(ValueError):
    """A problem with the request that the user can fix; its message is shown as is."""


#: The app marks lines whose confidence is below this for review.
REVIEW_BELOW = 0.5


#: How the request now running tells that nobody waits for it any more (set by the Gradio layer for the
#: duration of one event; a context variable, so it follows the request onto its thread). The scheduler asks
#: it before each piece of the request's work.
CANCELLED: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("cancelled", default=None)


def shown(value: Any, limit: int = 60) -> str:
    """`value` for a message: its repr, cut to `limit` characters (a request field may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_field(value: Any, name: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A short text field (checkpoint, decoder) as a string, or UserError when it is longer than `limit`."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        raise UserError(f"The {name} field has {len(text):,} characters; this app takes at most {limit:,}.")
    return text


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
    task: Task = TRANSLATION
    note: str = ""  # what the model's attention (or its absence) means, from the model class
    tokenizer_id: str | None = None  # sha256 of the tokenizer a PyTorch checkpoint carries (ensembles need one)
    members: tuple[Path, ...] = ()  # an ensemble entry: the checkpoints decoding together (translator/engines/ensemble.py)
    reverse: bool = False  # trained on its pairs reversed: a chat model's backward model, not one to chat with
    lineage: str = ""  # "fine-tuned from PATH (sha256 …, data)" for a fine-tuned checkpoint

    @property
    def is_chat(self) -> bool:
        return self.task.conversational

    def describe(self, chat: bool = False) -> str:
        """Markdown that says what this model is and (for translation) what its heatmap means."""
        if self.error:
            return f"⚠️ {self.error}"
        data = self.dataset or "unknown data"
        lineage = f" {self.lineage[0].upper()}{self.lineage[1:]}." if self.lineage else ""
        if chat:
            return f"Chatting with **{self.path.name}**: {self.architecture} trained on {data}.{lineage}"
        pair = f"{self.src_lang}→{self.tgt_lang}" if self.src_lang else "unknown languages"
        if self.members:
            names = ", ".join(member_names(self.members))
            return (f"**{self.architecture}** ({names}), {data} {pair}: every next token is scored by the mean of "
                    f"the members' log-probabilities. {self.note}").strip()
        return f"**{self.path.name}**: {self.architecture}, {data} {pair}.{lineage} {self.note}".strip()


def read_info(path: str | Path, root: Path | None = None) -> CheckpointInfo:
    """Metadata of one checkpoint without building its model (`CheckpointMeta.from_path`)."""
    path = Path(path)
    shown = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
    try:
        meta = CheckpointMeta.from_path(path)
        if meta.export is not None:  # a CTranslate2 directory written by `translator export`
            architecture = f"Transformer (CTranslate2 {meta.export.get('quantization', '?')})"
            note = CT2Model.attention_note(meta.init_args)
        else:
            cls = meta.model_class
            architecture, note = cls.__name__, cls.attention_note(meta.init_args)
    except (OSError, ValueError) as err:
        return CheckpointInfo(path, f"{shown} · unreadable", error=str(err))
    pair = f"{meta.src_lang}→{meta.tgt_lang}" if meta.src_lang else "?"
    return CheckpointInfo(path, f"{shown} · {architecture} · {pair}", architecture, meta.dataset, meta.src_lang,
                          meta.tgt_lang, task=meta.task, note=note, tokenizer_id=meta.tokenizer_id,
                          reverse=meta.reverse, lineage=meta.lineage)


def member_names(paths: Sequence[Path]) -> list[str]:
    """File names of an ensemble's members, or their paths when two share a name (run1/best.ckpt, run2/best.ckpt)."""
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def ensembles_of(infos: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
    """One ensemble entry per group of two or more usable translation checkpoints that can decode together:
    PyTorch checkpoints (an exported engine has no decoder steps to average) with one tokenizer and language
    pair (what `translator.engines.ensemble.check_compatible` asks)."""
    groups: dict[tuple[Any, ...], list[CheckpointInfo]] = {}
    for info in infos:
        if info.error or info.is_chat or info.tokenizer_id is None or info.members:
            continue
        groups.setdefault((info.tokenizer_id, info.src_lang, info.tgt_lang), []).append(info)
    entries = []
    for group in groups.values():
        group = list({i.path.resolve(): i for i in group}.values())  # the same file twice is one member
        if len(group) < 2:
            continue
        first = group[0]
        architecture = f"ensemble of {len(group)}: " + " + ".join(i.architecture or "?" for i in group)
        pair = f"{first.src_lang}→{first.tgt_lang}" if first.src_lang else "?"
        notes = {i.note for i in group}
        entries.append(CheckpointInfo(first.path, f"{architecture} · {pair}", architecture, first.dataset,
                                      first.src_lang, first.tgt_lang, note=notes.pop() if len(notes) == 1 else "",
                                      tokenizer_id=first.tokenizer_id, members=tuple(i.path for i in group)))
    labels = [e.label for e in entries]  # two groups of one shape (other tokenizers): name their files
    return [dataclasses.replace(e, label=f"{e.architecture} ({', '.join(member_names(e.members))}) · "
                                         f"{e.label.rsplit(' · ', 1)[-1]}") if labels.count(e.label) > 1 else e
            for e in entries]


def discover_checkpoints(root: str | Path | None) -> list[Path]:
    """Every `*.ckpt` and exported directory under `root` (recursive): names with 'best' first, then 'last',
    newest first."""
    if root is None or not Path(root).is_dir():
        return []
    files = [p for p in Path(root).rglob("*.ckpt") if p.is_file()]
    files += [p.parent for p in Path(root).rglob(EXPORT_FILE) if p.is_file()]

    def rank(p: Path) -> tuple[int, float]:
        name = p.stem.lower()
        return (0 if "best" in name else 1 if "last" in name else 2, -p.stat().st_mtime)

    return sorted(files, key=rank)[:MAX_FOUND]


class ModelCache:
    """Models by (checkpoint, kind), each loaded once, on first use, and shared (thread-safe).

    A failed load is remembered, so a broken file costs one attempt, not one per request.
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._lock = threading.Lock()
        self._loading: dict[tuple[Path, type], threading.Lock] = {}
        self._models: dict[tuple[Path, type], Translator] = {}
        self._failed: dict[tuple[Path, type], str] = {}

    def get(self, path: Path | tuple[Path, ...], cls: type[Translator], backward: Path | None = None) -> Translator:
        """The model of one checkpoint, or of an ensemble when `path` is a tuple of checkpoints; a chat model
        with its `backward` model (MMI-bidi re-ranking) is a model of its own."""
        key = (tuple(Path(p).resolve() for p in path) if isinstance(path, tuple) else Path(path).resolve(), cls)
        if backward is not None:
            key = (*key, Path(backward).resolve())
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
                if isinstance(path, tuple):  # the members' models from this cache: each loaded once
                    bundles = [self.get(member, cls).bundle for member in path]
                    model = cls(ensemble_of(bundles, self.device), device=self.device)
                elif backward is not None:
                    model = cls.from_checkpoint(path, device=self.device, backward=backward)
                else:
                    model = cls.from_checkpoint(path, device=self.device)
            except Exception as err:  # noqa: BLE001 - any failure is remembered: one attempt per file, one message
                what = "the ensemble of " + ", ".join(map(str, path)) if isinstance(path, tuple) else path
                if not isinstance(err, (OSError, ValueError)):  # not a checkpoint reader's message: keep the trace
                    log.exception("loading %s failed", what)
                    err = f"{type(err).__name__}: {err}"
                what = f"{what} with --backward {backward}" if backward is not None else what
                self._failed[key] = f"Cannot load {what}: {err}"
                raise UserError(self._failed[key]) from None
            with self._lock:
                self._models[key] = model
            return model


class ModelRegistry:
    """The checkpoints the app offers (translation ones and one chat one), over a ModelCache.

    With two or more compatible translation checkpoints given (`--checkpoint A --checkpoint B`), their
    ensemble is offered too (`ensembles`, after them in `choices`); found checkpoints (a run's many epoch
    files) never form one. `chat_backward` is the chat model's backward model (MMI-bidi re-ranking); found
    backward models (trained with --data.reverse true) are never offered to chat with.
    """

    def __init__(self, checkpoints: Sequence[str | Path] | str | None = None, chat_checkpoint: str | Path | None = None,
                 checkpoints_dir: str | Path | None = None, device: str = "cpu", cache: ModelCache | None = None,
                 chat_backward: str | Path | None = None):
        self.device = device
        self.cache = cache or ModelCache(device)
        if isinstance(checkpoints, (str, Path)):
            checkpoints = [checkpoints]
        given = [Path(p) for p in checkpoints or []]
        root = Path(checkpoints_dir) if checkpoints_dir else None
        found = [p for p in discover_checkpoints(root) if p.resolve() not in {g.resolve() for g in given}]
        given_infos = [read_info(p, root) for p in dict.fromkeys(given)]
        found_infos = [read_info(p, root) for p in found]
        # Found chat checkpoints belong to the Chat tab; given ones are offered wherever asked.
        self.translation = _unique_labels(given_infos + [i for i in found_infos if not i.is_chat])
        self.ensembles = ensembles_of(given_infos)
        self.chat: CheckpointInfo | None = (read_info(chat_checkpoint, root) if chat_checkpoint else
                                            next((i for i in found_infos if i.is_chat and not i.error
                                                  and not i.reverse), None))
        # The chat model's backward model (MMI-bidi re-ranking), checked against it when they load.
        self.chat_backward: Path | None = Path(chat_backward) if chat_backward else None

    @property
    def labels(self) -> list[str]:
        """The single checkpoints' labels."""
        return [info.label for info in self.translation]

    @property
    def choices(self) -> list[str]:
        """What the Translate tab offers: the single checkpoints, then their ensembles."""
        return self.labels + [info.label for info in self.ensembles]

    @property
    def default(self) -> CheckpointInfo | None:
        """The first usable translation checkpoint (or the first listed one, to explain why none works)."""
        return next((i for i in self.translation if not i.error), self.translation[0] if self.translation else None)

    def resolve(self, choice: str | None, ensembles: bool = True) -> CheckpointInfo:
        """A listed checkpoint (or, when `ensembles`, an offered ensemble) by label or path; '' or None = the
        default. Never loads unlisted files."""
        if not self.translation:
            raise UserError(f"No translation checkpoint is loaded. Train one with `{TRAIN_HINT}`.")
        if not choice or not str(choice).strip():
            return self.default
        choice = str(choice).strip()
        for info in self.translation:
            if choice in (info.label, str(info.path)) or _same_file(choice, info.path):
                return info
        if ensembles:
            for info in self.ensembles:
                if choice == info.label:
                    return info
        known = self.choices if ensembles else self.labels
        raise UserError(f"Unknown checkpoint {choice[:200]!r}; choose one of: {', '.join(known)}")

    def translator(self, info: CheckpointInfo) -> Translator:
        if info.error:
            raise UserError(info.error)
        return self.cache.get(info.members or info.path, Translator)

    def chatbot(self) -> Chatbot:
        if self.chat is None:
            raise UserError(f"No chat checkpoint is loaded. Train one with `{CHAT_TRAIN_HINT}` "
                            "and start the app with `--chat_checkpoint PATH`.")
        if self.chat.error:
            raise UserError(self.chat.error)
        return self.cache.get(self.chat.path, Chatbot, self.chat_backward)  # type: ignore[return-value]


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


# ---- requests -----------------------------------------------------------------------------------

@dataclasses.dataclass
class TranslateResult:
    """What the Translate tab shows: the text, the first line's heatmap (a matplotlib Figure), a note."""

    text: str
    figure: Any
    info: str
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class ChatSettings:
    """What the Chat tab states about its model: language, examples, context and decoding defaults."""

    language: str | None
    language_name: str
    examples: list[str]
    placeholder: str
    context_turns: int
    decoding: DecodeConfig
    backward: str | None = None  # the backward model's file name, when replies are re-ranked by MMI-bidi

    @property
    def context_note(self) -> str:
        if self.context_turns <= 1:
            return "The model sees only your last message, not the earlier turns (it was trained that way)."
        earlier = self.context_turns - 1
        turns = "turn" if earlier == 1 else "turns"
        return f"The model sees your message and the {earlier} previous {turns} of the conversation."


class TranslatorService:
    """Translate and chat; every problem a user can cause raises UserError. No Gradio here."""

    def __init__(self, registry: ModelRegistry, max_input_chars: int = 2000, workers: int = 2,
                 max_request_cost: int = MAX_REQUEST_COST, time_limit: float = REQUEST_TIME_LIMIT):
        if max_input_chars < 1:
            raise ValueError(f"max_input_chars must be >= 1, got {max_input_chars}")
        if time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
        self.registry = registry
        self.max_input_chars = max_input_chars
        self.max_history_chars = HISTORY_CHARS_PER_INPUT * max_input_chars
        self.max_request_cost = max_request_cost
        self.time_limit = time_limit
        self.scheduler = FairScheduler(workers)  # every decode of this service runs here, fairly shared

    def run(self, pieces: Sequence[Callable[[], Any]], what: str, hint: str) -> list[Any]:
        """Run `pieces` on the shared workers within the time limit; UserError when stopped."""
        try:
            return self.scheduler.run(pieces, self.time_limit, CANCELLED.get())
        except RequestTimeout:
            raise UserError(f"The {what} took longer than {self.time_limit:.0f} s and was stopped. {hint}") from None
        except RequestCancelled:
            raise UserError(f"The {what} was cancelled.") from None

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

    def check_translate(self, text: Any, checkpoint: str | None = None, decoder: str = "greedy",
                        beam_size: Any = 5) -> tuple[str, CheckpointInfo, DecodeConfig]:
        """The request's text, checkpoint and decoding, or UserError; cheap (no model is loaded), so the app
        runs it before a request is queued."""
        text = self.check_text(text)
        if check_field(decoder, "decoder") not in ("greedy", "beam"):
            raise UserError(f"Unknown decoder {shown(decoder)}; choose greedy or beam.")
        beam_size = served("beam_size", beam_size)
        info = self.registry.resolve(check_field(checkpoint, "checkpoint"))
        if info.error:
            raise UserError(info.error)
        return text, info, DecodeConfig(method=decoder, beam_size=beam_size)

    def _translate_lines(self, translator: Translator, lines: list[str], config: DecodeConfig,
                         attention: bool = True) -> list[Translation]:
        """Decode `lines` on the shared workers in pieces of PIECE_COST; UserError over the budget or time limit."""
        tok = translator.tokenizer
        lengths = [min(len(ids), translator.max_src_tokens) if line.strip() else 0
                   for line, ids in zip(lines, tok.encode_src(lines))]
        max_len = min(config.max_len, translator.max_src_tokens)
        width = config.beam_size if config.method == "beam" else max(1, config.num_candidates)
        costs = [width * length_limit(n, config.max_len_a, config.max_len_b, max_len) if n else 0 for n in lengths]
        total = sum(costs)
        if total > self.max_request_cost:
            raise UserError(f"This request would decode about {total:,} tokens (lines × beam × output length); "
                            f"the limit is {self.max_request_cost:,}. Send fewer lines or use a smaller beam.")
        order = sorted(range(len(lines)), key=lambda i: lengths[i])  # similar lengths share a piece: less padding
        groups = [[order[j] for j in group] for group in pieces_by_cost([costs[i] for i in order], PIECE_COST)]

        confidence = translator.bundle.calibrator is not None  # exported models and ensembles have none

        def piece(indices: list[int]) -> Any:
            return lambda: translator.translate([lines[i] for i in indices], config, batch_size=len(indices),
                                                return_attention=attention, confidence=confidence)

        parts = self.run([piece(g) for g in groups], "translation", "Send fewer lines or use greedy decoding.")
        results: list[Any] = [None] * len(lines)
        for indices, part in zip(groups, parts):
            for i, result in zip(indices, part):
                results[i] = result
        return results

    def translate_text(self, text: str, checkpoint: str | None = None, decoder: str = "greedy",
                       beam_size: int = 5, figure: bool = True) -> TranslateResult:
        """Translate `text` line by line; with `figure`, the first non-empty line's attention heatmap too
        (drawing it costs more than decoding a short line: the API, which returns text only, skips it).

        Never raises: a user error or a failure comes back in `error` (and `info`).
        """
        try:
            text, info, config = self.check_translate(text, checkpoint, decoder, beam_size)
            translator = self.registry.translator(info)
            results = self._translate_lines(translator, text.splitlines(), config, attention=figure)
        except UserError as err:
            return TranslateResult("", None, f"⚠️ {err}", error=str(err))
        except Exception:  # noqa: BLE001 - never a stack trace in the UI; the log has it
            log.exception("translation failed")
            message = "Something went wrong while translating this input; the server log has the details."
            return TranslateResult("", None, f"⚠️ {message}", error=message)
        notes = [info.describe()]
        first = next((r for r in results if r.src_pieces), None)
        heatmap = None
        if figure and first is not None and first.attention is not None and first.tgt_pieces:
            heatmap = attention_figure(first.src_pieces, first.tgt_pieces, first.attention)
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
        scored = [(n, r.confidence) for n, r in enumerate(results, 1) if r.confidence is not None]
        if scored:
            threshold = translator.calibrator.chrf_threshold
            listed = ", ".join(f"line {n}: {c:.2f}{' (review)' if c < REVIEW_BELOW else ''}" for n, c in scored[:20])
            notes.append(f"Confidence (the estimated chance that a line reaches chrF {threshold:g}): {listed}"
                         + (f", … ({len(scored) - 20} more lines)" if len(scored) > 20 else "") + ".")
        output = "\n".join(printable(r.text) for r in results)
        if not output.strip():
            notes.append("The model produced an empty translation for this input.")
        return TranslateResult(output, heatmap, "\n\n".join(notes))

    def describe_checkpoint(self, checkpoint: str | None) -> str:
        """The note shown when a checkpoint is picked: what it is, and whether it has attention."""
        try:
            return self.registry.resolve(checkpoint).describe()
        except UserError as err:
            return f"⚠️ {err}"

    def chat_settings(self) -> ChatSettings:
        """Language, examples, context and default decoding of the chat model (loads it)."""
        bot = self.registry.chatbot()
        lang = bot.language
        return ChatSettings(lang, LANGUAGE_NAMES.get(lang or "", lang or "an unknown language"),
                            CHAT_EXAMPLES.get(lang or "", []), CHAT_PLACEHOLDERS.get(lang or "", "…"),
                            bot.context_turns, bot.default_decoding,
                            bot.backward.path.name if bot.backward is not None else None)

    def check_history(self, history: Any) -> list[str]:
        """The chat history's turns as strings, or UserError when it has more turns or characters than a
        request may carry (cheap: the app runs it before a request is queued)."""
        if history is None:
            return []
        if not isinstance(history, (list, tuple)):
            raise UserError(f"The chat history must be a list of turns, got {type(history).__name__}.")
        turns = flatten_history(history[:MAX_HISTORY_TURNS + 1])
        count = max(len(history), len(turns))
        if count > MAX_HISTORY_TURNS:
            raise UserError(f"The chat history has {count:,} turns; this app takes at most "
                            f"{MAX_HISTORY_TURNS} per request. Clear the conversation, or send fewer turns.")
        chars = sum(len(t) for t in turns)
        if chars > self.max_history_chars:
            raise UserError(f"The chat history has {chars:,} characters; this app takes at most "
                            f"{self.max_history_chars:,} per request. Clear the conversation, or send fewer turns.")
        return turns

    def fit_history(self, history: list[dict]) -> list[dict]:
        """The newest turns of a Chat-tab conversation that `check_history` accepts (the oldest go first)."""
        while history and (len(history) > MAX_HISTORY_TURNS or
                           sum(len(t) for t in flatten_history(history)) > self.max_history_chars):
            history = history[1:]
        return history

    def check_chat(self, message: Any, history: Any = None, method: Any = None, temperature: Any = None,
                   top_p: Any = None, lm_weight: Any = None, beam_size: Any = None, candidates: Any = None,
                   top_k: Any = None, no_repeat_ngram_size: Any = None, backward_weight: Any = None
                   ) -> tuple[str, list[str], dict[str, Any]]:
        """(message, history turns, decoding options given), or UserError; cheap (no model is loaded), so the
        app runs it before a request is queued. None = the model's default for that option."""
        message = self.check_text(message, "message").strip()
        turns = self.check_history(history)
        options: dict[str, Any] = {}
        if method is not None:
            if check_field(method, "decoder") not in ("sample", "beam", "greedy"):
                raise UserError(f"Unknown decoder {shown(method)}; choose sample, beam or greedy.")
            options["method"] = method
        given = dict(temperature=temperature, top_p=top_p, lm_weight=lm_weight, beam_size=beam_size,
                     candidates=candidates, top_k=top_k, no_repeat_ngram_size=no_repeat_ngram_size,
                     backward_weight=backward_weight)
        options.update({name: served(name, value) for name, value in given.items() if value is not None})
        return message, turns, options

    def chat_reply(self, message: str, history: Sequence[Any] | None = None, method: str | None = None,
                   temperature: float | None = None, top_p: float | None = None, lm_weight: float | None = None,
                   beam_size: int | None = None, candidates: int | None = None, top_k: int | None = None,
                   no_repeat_ngram_size: int | None = None) -> str:
        """The chat model's reply to `message` after `history`; None = the model's default for that
        option (CHAT_DECODING). UserError for anything the user can fix."""
        return self.chat_turn(message, history, method=method, temperature=temperature, top_p=top_p,
                              lm_weight=lm_weight, beam_size=beam_size, candidates=candidates, top_k=top_k,
                              no_repeat_ngram_size=no_repeat_ngram_size).reply

    def chat_turn(self, message: str, history: Sequence[Any] | None = None,
                  on_partial: Callable[[list[str]], None] | None = None, **options: Any) -> "ChatTurn":
        """The reply with every candidate it was chosen from and their scores; `options` as `check_chat`
        takes them; `on_partial(texts)` sees the sampled candidates while they are generated."""
        message, turns, given = self.check_chat(message, history, **options)
        bot, config = self.chat_decoding(given)
        result = self.run([lambda: bot.reply_candidates(turns, message, config, on_partial=on_partial)], "reply",
                          "Try greedy decoding or fewer candidates.")[0]
        return ChatTurn(printable(result.text), result.candidates, result.config, result.chosen)

    def chat_stream(self, message: str, history: Sequence[Any] | None = None,
                    **options: Any) -> Iterator["list[str] | ChatTurn"]:
        """`chat_turn` as it happens: the sampled candidates' text so far after every step (lists of str; nothing
        for beam and greedy search), then the ChatTurn. UserError (raised when iterated) as `chat_turn`."""
        updates: queue.Queue = queue.Queue()

        def work() -> None:
            try:
                updates.put(self.chat_turn(message, history, on_partial=updates.put, **options))
            except BaseException as err:  # noqa: BLE001 - handed to the reader, which raises it
                updates.put(err)

        context = contextvars.copy_context()  # the caller's cancellation check (CANCELLED) goes with the work
        threading.Thread(target=context.run, args=(work,), daemon=True, name="chat-stream").start()
        while True:
            item = updates.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, ChatTurn):
                return

    def chat_decoding(self, options: dict[str, Any]) -> tuple[Chatbot, DecodeConfig]:
        """The chat model and the decoding a request asks for (`options` from `check_chat`; absent = the model's
        default: CHAT_DECODING, or CHAT_BIDI_DECODING with a backward model). UserError for a bad value."""
        bot = self.registry.chatbot()
        if options.get("backward_weight") and bot.backward is None:
            raise UserError("The backward weight needs a backward model; start the app with `--backward CKPT` "
                            "(README, Chat).")
        try:
            config = decode_config(None, bot.default_decoding, **options)
        except ValueError as err:
            raise UserError(str(err)) from None
        if config.lm_weight and bot.bundle.empty_source is None:
            config = config.replace(lm_weight=0.0)  # a model without context dropout has no reply LM
        return bot, config


@dataclasses.dataclass(frozen=True)
class ChatTurn:
    """What the Chat tab shows for one reply: the text, and why it was chosen (every candidate's scores)."""

    reply: str
    candidates: list[ReplyCandidate]
    config: DecodeConfig
    chosen: int = 0

    HEADERS = ("", "candidate reply", "log p(r|c)", "log p(c|r)", "log p(r)", "length", "total")

    def rows(self) -> list[list[Any]]:
        """One row per candidate, best first: chosen mark, text, forward, backward, anti-LM, length, total."""
        def cell(x: float | None) -> Any:  # -inf (an empty reply explains nothing) is no JSON number: text
            return "-" if x is None else round(x, 2) if math.isfinite(x) else f"{x}"

        return [["✓" if i == self.chosen else "", printable(c.text) or "(empty)", cell(c.forward), cell(c.backward),
                 cell(c.lm), c.length, cell(c.total)] for i, c in enumerate(self.candidates)]

    @property
    def formula(self) -> str:
        """How `total` was computed, with this decoding's weights."""
        c = self.config
        if not c.reranks:
            how = "log p(r|c) / length" if c.normalize else f"log p(r|c) / ((5 + length) / 6)^{c.length_penalty}"
            return f"total = {how} (no re-ranking)"
        terms = ["log p(r|c)"]
        if c.backward_weight:
            terms.append(f"+ {c.backward_weight:g} · log p(c|r)")
        if c.lm_weight:
            terms.append(f"− {c.lm_weight:g} · log p(r)")
        if c.length_bonus:
            terms.append(f"+ {c.length_bonus:g} · length")
        return "total = " + " ".join(terms)


def printable(text: str) -> str:
    """Model output without control characters or U+FFFD (decoders keep byte pieces whole; this is the
    last guard for models that still spell a character the tokenizer cannot decode)."""
    return "".join(c for c in text if c != "\ufffd" and unicodedata.category(c) not in ("Cc", "Cs", "Co", "Cn")
                   ).strip()


def served(name: str, value: Any) -> Any:
    """A request's value of decoding option `name`, within the bounds on its DecodeConfig field, or UserError."""
    low, high, label = DecodeConfig.served(name)
    check = int_in if isinstance(low, int) and isinstance(high, int) else float_in
    return check(value, label, low, high)


def int_in(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"The {name} must be a number, got {shown(value)}.") from None
    if not low <= number <= high:
        raise UserError(f"The {name} must be between {low} and {high}, got {number}.")
    return number


def float_in(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"The {name} must be a number, got {shown(value)}.") from None
    if not low <= number <= high:  # also rejects NaN
        raise UserError(f"The {name} must be between {low} and {high}, got {number}.")
    return number
