"""`Chatbot.reply(history, message)`: a Translator for chat checkpoints (the source is the conversation so far,
built by the checkpoint's task), with every candidate reply and the terms of its score."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from translator.artifacts.checkpoint import Bundle
from translator.decoding import DecodeConfig, decode_config
from translator.inference.translator import Translator


@dataclasses.dataclass(frozen=True)
class ReplyCandidate:
    """One candidate reply and the terms of its re-ranking score (None: a term that was not computed)."""

    text: str
    forward: float  # log p(reply | context)
    backward: float | None  # log p(context | reply) under the backward model
    lm: float | None  # log p(reply) (the empty context)
    length: int  # scored steps: tokens + eos
    total: float  # the ranking score (`decoding.rerank_score`, or the length-normalised score without re-ranking)


@dataclasses.dataclass(frozen=True)
class ChatReply:
    """A reply, every candidate it was chosen from (best first) and the decoding that chose it."""

    text: str
    candidates: list[ReplyCandidate]
    config: DecodeConfig
    chosen: int = 0  # index of the reply among the candidates


class Chatbot(Translator):
    """A chat checkpoint: the source is the conversation so far, the target the next reply.

    The context it sends is what the checkpoint was trained with: `bundle.chat_context_turns`
    turns, the message included (1 = the message alone); decoding defaults to the task's (`CHAT_DECODING`,
    `CHAT_BIDI_DECODING` with a `backward` model).
    """

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu", precision: str = "fp32",
                 backward: Bundle | None = None):
        if not bundle.task.conversational:  # before the backward check, which would say less
            raise ValueError(f"{bundle.path} is a {bundle.task.name} checkpoint (trained on {bundle.dataset or 'unknown data'}), "
                             "not a chat model; train one with "
                             "`translator fit --config translator/configs/chat_dailydialog.yaml`")
        super().__init__(bundle, device, precision, backward)
        self.context_turns = bundle.chat_context_turns

    @property
    def language(self) -> str | None:
        """The language the model speaks (its target language)."""
        return self.bundle.tgt_lang

    def build_context(self, history: Sequence[Any], message: str) -> str:
        """The source text the model was trained with: the last `context_turns` turns of the
        conversation, the message included, joined by `<sep>` (`Task.source`, as the DailyDialog
        reader builds pairs); the oldest turns are dropped first to fit the length limit.

        `history` is a list of turns: strings, (user, bot) pairs, or {"role", "content"} dicts;
        empty turns are skipped, and any number of turns is accepted.
        """
        turns = [t for t in flatten_history(history) if t.strip()]
        turns = turns[-(self.context_turns - 1):] if self.context_turns > 1 else []
        while turns:
            context = self.bundle.task.source([*turns, message])
            if len(self.tokenizer.encode_src([context])[0]) <= self.max_src_tokens:
                return context
            turns = turns[1:]  # the oldest turn goes first
        return message

    def reply(self, history: Sequence[Any], message: str, config: DecodeConfig | None = None,
              **options: Any) -> str:
        """Next reply to `message` after `history` (default decoding: `default_decoding`; `options` are
        DecodeConfig fields over it). Empty message -> ValueError. Never an empty reply when the
        model can give anything: when the best hypothesis is empty, the next-best one is used."""
        return self.reply_candidates(history, message, config, **options).text

    def reply_candidates(self, history: Sequence[Any], message: str, config: DecodeConfig | None = None,
                         on_partial: Callable[[list[str]], None] | None = None, **options: Any) -> ChatReply:
        """`reply`, with every candidate and its scores (forward, backward, anti-LM, length, total).

        `on_partial(texts)`, when given, sees the sampled candidates' text so far after every sampling
        step (candidate order; a streaming UI shows them while they are generated).
        """
        if not message or not message.strip():
            raise ValueError("message is empty")
        context = self.build_context(history, message.strip())
        config = decode_config(config, self.default_decoding, **options)
        on_step = None
        if on_partial is not None:
            partial: dict[int, list[int]] = {}

            def on_step(samples: list[int], tokens: list[list[int]]) -> None:
                partial.update(zip(samples, tokens))
                on_partial(self.tokenizer.decode_tgt([partial[j] for j in sorted(partial)]))

        result = self.translate([context], config.replace(nbest=config.num_candidates), on_step=on_step)[0]
        chosen = next((i for i, (text, _) in enumerate(result.nbest) if text.strip()), None)
        if chosen is None and config.min_len < 1:  # every hypothesis was empty: ask for at least one token
            result = self.translate([context], config.replace(min_len=1, nbest=config.num_candidates))[0]
            chosen = 0
        candidates = [ReplyCandidate(text, h.score, h.backward_score, h.lm_score, len(h.tokens) + h.finished,
                                     h.normalized) for (text, _), h in zip(result.nbest, result.hypotheses)]
        text = result.nbest[chosen][0] if chosen is not None else ""
        return ChatReply(text, candidates, config, chosen or 0)


def flatten_history(history: Sequence[Any]) -> list[str]:
    """Turns as strings from a history of strings, (user, bot) pairs or {"role", "content"} dicts
    (Gradio's content parts included); anything else in the list is ignored, never an error."""
    turns: list[str] = []
    for item in history or []:
        if isinstance(item, str):
            turns.append(item)
        elif isinstance(item, dict):
            content = item.get("content")
            if isinstance(content, list):  # gradio message content parts
                content = " ".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
            if content:
                turns.append(str(content))
        elif isinstance(item, (list, tuple)):
            turns.extend(str(x) for x in item if x)
    return turns
