"""The tasks a checkpoint is trained for (translation, chat) and every rule that differs between them.

A task is an object, recorded by name in the checkpoint (`data["task"]`) and looked up with
`get_task(name)`; code asks it, and no other module compares a task name:

- `source(turns)`: the source text of a conversation, its turns joined by `<sep>` (the one writer:
  the DailyDialog reader builds training pairs with it, `Chatbot` builds what it sends with it);
- `context_turns(data)`: turns the model sees, the message included, as trained (recorded in
  the checkpoint; `translator.artifacts.checkpoint.CheckpointMeta` fills it in for older ones);
- `empty_source(data, tokenizer)`: the source for p(reply) (anti-LM re-ranking), or None;
- `default_decoding(data)`: the decoding used when none is given;
- `whole_corpus_metrics`: whether `evaluate` reports the metrics that need every output at once
  (chat: distinct-n, generic share, reference perplexity) instead of streaming BLEU / chrF;
- `checkpoints()`: the checkpoints a training run keeps and how `best.ckpt` is chosen (the default
  callbacks of `translator fit`, translator/cli.py).

A new chat rule goes into `Chat`; a new task is a `Task` subclass added to `TASKS`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from translator.decoding import CHAT_BIDI_DECODING, CHAT_DECODING, DecodeConfig, with_recipe
from translator.tokenizer import SEP_TOKEN

#: The epoch checkpoints every run keeps beside best.ckpt and last.ckpt: the last 5 epochs (weights only),
#: for `translator average` (and, for chat, because distinct-n keeps improving).
LAST_EPOCHS = {"monitor": "epoch", "mode": "max", "save_top_k": 5, "save_weights_only": True,
               "filename": "epoch{epoch:02d}", "auto_insert_metric_name": False}

#: Turns in a multi-turn chat source (the message and the turns before it) unless a run sets
#: `--data.context_turns`; also what checkpoints written before the length was recorded used.
DEFAULT_CONTEXT_TURNS = 3


class Task:
    """What one task decides; subclasses override the rules that differ."""

    name: ClassVar[str]
    conversational: ClassVar[bool] = False  # the source is a conversation (context dropout applies)
    whole_corpus_metrics: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # a leftover `task == "chat"`: ask the task instead
            raise TypeError(f"compare a Task by its rules (or task.name), not with the string {other!r}")
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(self.name)

    def source(self, turns: Sequence[str]) -> str:
        """The source text of `turns` (oldest first): the turns joined by ` <sep> `."""
        return f" {SEP_TOKEN} ".join(turns)

    def context_turns(self, data: dict[str, Any]) -> int:
        """Turns the model sees, the message included (1 = the message alone), from a checkpoint's data options."""
        return 1

    def empty_source(self, data: dict[str, Any], tokenizer: Any) -> list[int] | None:
        """The empty-context source ids for p(reply) (anti-LM re-ranking), or None when the model never learned it."""
        return None

    def default_decoding(self, data: dict[str, Any], backward: bool = False,
                         recipe: dict[str, Any] | None = None) -> DecodeConfig:
        """The decoding used when none is given (`backward`: a backward model is loaded beside the model),
        with the fields the checkpoint's recipe recorded (`recipe`, Seq2SeqSystem's `decoding`) over it."""
        return with_recipe(DecodeConfig(), recipe)

    def checkpoints(self) -> list[dict[str, Any]]:
        """The checkpoints a training run keeps, as ModelCheckpoint arguments (one dict per callback):
        best.ckpt (the best validation BLEU) and last.ckpt, then the last epochs."""
        return [{"monitor": "val/bleu", "mode": "max", "save_top_k": 1, "save_last": True, "filename": "best",
                 "auto_insert_metric_name": False}, dict(LAST_EPOCHS)]


class TranslationTask(Task):
    """Source sentence -> target sentence."""

    name = "translation"


class ChatTask(Task):
    """Conversation so far -> next reply."""

    name = "chat"
    conversational = True
    whole_corpus_metrics = True

    def context_turns(self, data: dict[str, Any]) -> int:
        return int(data.get("chat_context_turns") or 1)  # legacy checkpoints: filled in by CheckpointMeta

    @staticmethod
    def turns_for(multi_turn: bool, context_turns: int) -> int:
        """Turns a chatbot sends for data read with `context_turns`: all of them for multi-turn
        dialogues, the message alone for single-turn pairs."""
        return context_turns if multi_turn else 1

    def empty_source(self, data: dict[str, Any], tokenizer: Any) -> list[int] | None:
        if float(data.get("context_dropout") or 0.0) > 0.0:
            return [tokenizer.sep_id]  # `<sep>` alone: what context dropout trains on
        return None

    def default_decoding(self, data: dict[str, Any], backward: bool = False,
                         recipe: dict[str, Any] | None = None) -> DecodeConfig:
        """CHAT_DECODING (CHAT_BIDI_DECODING with a backward model), without its anti-LM term when the model
        never learned p(reply) (no context dropout), with the recipe's recorded fields over it."""
        chat = CHAT_BIDI_DECODING if backward else CHAT_DECODING
        if not float(data.get("context_dropout") or 0.0) > 0.0:
            chat = chat.replace(lm_weight=0.0)
        return with_recipe(chat, recipe)

    def checkpoints(self) -> list[dict[str, Any]]:
        """best.ckpt = the last epoch: past the validation-loss minimum the replies keep getting more specific
        and diverse (benchmarks/RESULTS.md, "Chat"); loss-min.ckpt keeps the loss minimum; the last epochs."""
        return [{"monitor": None, "save_top_k": 1, "save_last": True, "filename": "best"},  # no monitor: the latest
                {"monitor": "val/loss", "mode": "min", "save_top_k": 1, "filename": "loss-min",
                 "auto_insert_metric_name": False}, dict(LAST_EPOCHS)]


TRANSLATION, CHAT = TranslationTask(), ChatTask()
TASKS: dict[str, Task] = {t.name: t for t in (TRANSLATION, CHAT)}


def get_task(name: str) -> Task:
    """The task called `name`; one ValueError listing the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
