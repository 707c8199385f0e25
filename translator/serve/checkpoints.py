"""The checkpoints the app offers and their models: what each checkpoint is (read without building its model),
the ensembles they can form, the ones found under a folder, and the models loaded once and shared.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from translator.artifacts.checkpoint import EXPORT_FILE, CheckpointMeta
from translator.engines.ct2 import CT2Model
from translator.engines.ensemble import ensemble_of
from translator.inference.chatbot import Chatbot
from translator.inference.translator import Translator
from translator.serve.validation import UserError
from translator.tasks import TRANSLATION, Task

log = logging.getLogger("translator.service")

TRAIN_HINT = "translator fit --config translator/configs/transformer.yaml"
CHAT_TRAIN_HINT = "translator fit --config translator/configs/chat_dailydialog.yaml"
MAX_FOUND = 50  # checkpoints listed from checkpoints_dir; a training run can leave many


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
