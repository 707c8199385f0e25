"""What the app offers, without Gradio: the two requests (translate text, reply to a chat message) over
the offered checkpoints' models, run fairly on shared workers, with a `UserError` for anything a user can fix.

The Gradio layer (`translator.app`) only lays out components and maps `UserError` to the UI; an
embedder or a test can use `TranslatorService` directly. Which checkpoints and models: checkpoints.py;
the request limits and field checks: validation.py (both re-exported here).
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
from typing import Any

from translator.decoding import DecodeConfig, decode_config, length_limit
from translator.evaluation.plots import attention_figure
from translator.inference.chatbot import Chatbot, ReplyCandidate, flatten_history
from translator.inference.translator import Translation, Translator
from translator.serve.checkpoints import (CHAT_TRAIN_HINT, MAX_FOUND, TRAIN_HINT, CheckpointInfo, ModelCache,
                                          ModelRegistry, discover_checkpoints, ensembles_of, member_names, read_info)
from translator.serve.scheduling import FairScheduler, RequestCancelled, RequestTimeout, pieces_by_cost
from translator.serve.validation import (HISTORY_CHARS_PER_INPUT, MAX_BACKWARD_WEIGHT, MAX_BEAM, MAX_CANDIDATES,
                                         MAX_FIELD_CHARS, MAX_HISTORY_TURNS, MAX_REQUEST_COST, PIECE_COST,
                                         REQUEST_TIME_LIMIT, UserError, check_field, float_in, int_in, served, shown)

__all__ = ["CANCELLED", "CHAT_EXAMPLES", "CHAT_PLACEHOLDERS", "CHAT_TRAIN_HINT", "HISTORY_CHARS_PER_INPUT",
           "LANGUAGE_NAMES", "MAX_BACKWARD_WEIGHT", "MAX_BEAM", "MAX_CANDIDATES", "MAX_FIELD_CHARS", "MAX_FOUND",
           "MAX_HISTORY_TURNS", "MAX_REQUEST_COST", "PIECE_COST", "REQUEST_TIME_LIMIT", "REVIEW_BELOW", "TRAIN_HINT",
           "ChatSettings", "ChatTurn", "CheckpointInfo", "ModelCache", "ModelRegistry", "TranslateResult",
           "TranslatorService", "UserError", "check_field", "discover_checkpoints", "ensembles_of", "float_in",
           "int_in", "member_names", "printable", "read_info", "served", "shown"]

log = logging.getLogger("translator.service")

#: Example messages for the Chat tab, by the language the chat model speaks.
CHAT_EXAMPLES = {
    "en": ["Hi, how are you doing today?", "Thank you so much for your help!", "What do you do for a living?",
           "Do you want to go to the movies tonight?", "I'm looking for a bank near here."],
    "ko": ["안녕하세요", "여자친구랑 헤어졌어", "오늘 날씨 정말 좋다", "요즘 잠이 안 와", "주말에 뭐 하지?"],
}
CHAT_PLACEHOLDERS = {"en": "Say something…", "ko": "메시지를 입력하세요…"}
LANGUAGE_NAMES = {"en": "English", "ko": "Korean", "de": "German", "fr": "French"}

#: The app marks lines whose confidence is below this for review.
REVIEW_BELOW = 0.5


#: How the request now running tells that nobody waits for it any more (set by the Gradio layer for the
#: duration of one event; a context variable, so it follows the request onto its thread). The scheduler asks
#: it before each piece of the request's work.
CANCELLED: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("cancelled", default=None)


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
