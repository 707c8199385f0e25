"""Checkpoint -> text: `Translator.translate(texts)`, over an engine (translator/engines/).

It loads a self-contained checkpoint once and reuses it. Input never crashes decoding: empty or
whitespace-only lines come back empty, over-long sources are truncated with a warning, and the
output always has one entry per input, in input order. `Chatbot` (chatbot.py) is a Translator for
chat checkpoints.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from translator.artifacts.checkpoint import (Bundle, atomic_torch_save, bundle_of, is_exported, load_bundle,
                                             read_checkpoint, with_backward)
from translator.atomic import check_output
from translator.decoding import DEFAULT_MAX_LEN, DecodeConfig, Hypothesis, decode_config, rank
from translator.engines.base import check_precision
from translator.engines.ct2 import load_exported
from translator.engines.ensemble import load_ensemble
from translator.engines.pytorch import engine_of
from translator.inference.confidence import Calibrator, sentence_signals

log = logging.getLogger("translator.inference")

#: Longest source (in tokens) fed to a model that has no limit of its own (the RNNs): the decoding default.
DEFAULT_MAX_SRC_TOKENS = DEFAULT_MAX_LEN


@dataclasses.dataclass
class Translation:
    """One output: best text and score, the n-best list, and attention for plots when asked."""

    text: str
    score: float
    nbest: list[tuple[str, float]]
    src_pieces: list[str]
    tgt_pieces: list[str]
    attention: Tensor | None = None  # (T_out, S) over src_pieces, or None
    truncated: bool = False
    tokens: list[int] = dataclasses.field(default_factory=list)
    hypotheses: list[Hypothesis] = dataclasses.field(default_factory=list)  # behind `nbest`, in its order
    signals: dict[str, float] | None = None  # translator/inference/confidence.py SIGNALS, when asked for
    confidence: float | None = None  # in [0, 1], from a calibrated checkpoint's calibrator, when asked for


def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, or one ValueError when it is misspelt or not available here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:1, mps, ...") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {device!r} is not available here "
                         f"({torch.cuda.device_count()} CUDA device(s) visible); use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available here; use --device cpu")
    return dev


def load_backward(path: str | Path | None, device: str | torch.device = "cpu") -> Bundle | None:
    """The backward model of `--backward PATH` (a .ckpt; None -> None), checked against its chat model later."""
    if path is None:
        return None
    if is_exported(path):
        raise ValueError(f"--backward takes a .ckpt written by `translator fit`; {path} is an exported (CTranslate2) "
                         "directory, which cannot score a given reply")
    return load_bundle(path, device=device)


def check_backward(forward: Bundle, backward: Bundle) -> None:
    """One ValueError naming both files unless `backward` is a model of p(message | reply) for `forward`:
    a chat model trained on the same kind of pairs reversed (`--data.reverse true`), with the same tokenizer."""
    train = (f"train one with the chat model's own config and `--data.reverse true --data.context_dropout 0 "
             f"--data.tokenizer_path {forward.path}` (README, Chat)")
    if not forward.task.conversational or forward.reverse:
        what = "a backward model itself" if forward.reverse else f"a {forward.task.name} checkpoint"
        raise ValueError(f"{forward.path} is {what}; --backward {backward.path} re-ranks the replies of a forward "
                         "chat model (message -> reply) only")
    if not backward.task.conversational or not backward.reverse:
        what = (f"a {backward.task.name} checkpoint" if not backward.task.conversational
                else "a forward chat model (message -> reply), not a backward one (reply -> message)")
        raise ValueError(f"--backward {backward.path} is {what}; {train}")
    if backward.tokenizer.to_dict() != forward.tokenizer.to_dict():
        raise ValueError(f"--backward {backward.path} was trained with another tokenizer than {forward.path}; a "
                         f"backward model must read the chat model's vocabulary: {train}")
    if not forward.tokenizer.joint:
        raise ValueError(f"{forward.path} has separate source and target vocabularies; MMI-bidi re-ranking feeds its "
                         "replies to the backward model as sources, which needs one joint vocabulary "
                         "(--data.joint_vocab true, the chat configs' default)")
    if backward.chat_context_turns != forward.chat_context_turns:
        raise ValueError(f"--backward {backward.path} was trained to predict {backward.chat_context_turns} turn(s) of "
                         f"context, but {forward.path} reads {forward.chat_context_turns}; train the backward model "
                         f"with --data.context_turns as the chat model's ({forward.data.get('context_turns')})")


def attach_backward(checkpoint: str | Path, backward: str | Path, output: str | Path) -> Path:
    """Write `output`: the chat model `checkpoint` carrying its `backward` model, one file that decodes with
    MMI-bidi re-ranking without --backward (`with_backward` has the layout). Both are loaded and checked
    (`check_backward`) first; `output` is written atomically and may be neither input."""
    output = Path(output)
    check_output(output, {"checkpoint": [checkpoint, backward]})
    for path, what in ((checkpoint, "the chat model"), (backward, "the backward model")):
        if is_exported(path):
            raise ValueError(f"{path} is an exported (CTranslate2) directory; attach takes the .ckpt of {what} "
                             "written by `translator fit` (export the combined checkpoint afterwards)")
    chat, reverse = read_checkpoint(checkpoint), read_checkpoint(backward)  # each file read once
    check_backward(bundle_of(Path(checkpoint), chat), bundle_of(Path(backward), reverse))
    atomic_torch_save(with_backward(chat, reverse, backward), output)
    return output


class Translator:
    """A loaded checkpoint that turns source sentences into target sentences.

    It holds an `Engine` (translator/engines/base.py: PyTorch decoders, with bf16 / int8 precision, or
    CTranslate2 for an exported directory) and never asks which: it tokenizes, truncates to the
    engine's `max_src_len`, caps the output at `max_tgt_len`, batches, re-ranks and cuts the n-best
    (`decoding.rank`), formats and keeps the line alignment the same way for every engine.

    `backward` (chat only) is a model of p(message | reply) trained on the same pairs reversed with the
    same tokenizer (`check_backward`), run by an engine of its own: `rank` scores MMI-bidi with it, and
    the default decoding becomes the task's MMI-bidi one. Without it, the one the checkpoint carries
    (`attach_backward`), if any.
    """

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu", precision: str = "fp32",
                 backward: Bundle | None = None):
        self.bundle = bundle
        self.device = torch.device(device)
        self.engine = engine_of(bundle, self.device, precision)
        self.precision = self.engine.precision
        self.model = self.engine.model
        self.tokenizer = bundle.tokenizer
        self.max_src_tokens = self.engine.max_src_len
        if backward is None:  # a chat checkpoint may carry its backward model (`translator attach`)
            backward = bundle.backward
        self.backward, self.backward_engine = backward, None
        if backward is not None:
            check_backward(bundle, backward)
            self.backward_engine = engine_of(backward, self.device, precision)

    @property
    def default_decoding(self) -> DecodeConfig:
        """What `translate` uses when given no config: the checkpoint's task decides (translator.tasks) and its
        recipe's recorded decoding refines, with MMI-bidi re-ranking when a backward model is loaded."""
        return self.bundle.default_decoding(backward=self.backward is not None)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32",
                        backward: str | Path | None = None) -> "Translator":
        """Load `path` (a .ckpt or an exported directory) and, for a chat model, its `backward` .ckpt."""
        device = check_device(device)
        check_precision(precision)  # before the (slow) load
        if is_exported(path):  # ctranslate2 (an optional dependency) is imported only here, by the engine
            bundle = load_exported(path, device=device, precision=precision)
        else:
            bundle = load_bundle(path, device=device)
        return cls(bundle, device=device, precision=precision, backward=load_backward(backward, device))

    @classmethod
    def from_ensemble(cls, paths: Sequence[str | Path], device: str | torch.device = "cpu",
                      precision: str = "fp32", backward: str | Path | None = None) -> "Translator":
        """Decode with several checkpoints at once: the mean of their log-probabilities (translator/engines/ensemble.py).

        They must share one tokenizer, task and language pair (else one ValueError naming the files).
        """
        device = check_device(device)
        check_precision(precision)
        return cls(load_ensemble(paths, device=device), device=device, precision=precision,
                   backward=load_backward(backward, device))

    @property
    def name(self) -> str:
        b = self.bundle
        pair = f"{b.src_lang}→{b.tgt_lang}" if b.src_lang else "?"
        return f"{b.path.name} ({b.architecture}, {b.dataset or 'unknown data'} {pair})"

    @property
    def calibrator(self) -> Calibrator | None:
        """The checkpoint's confidence calibrator (`translator calibrate`), or None."""
        data = self.bundle.calibrator
        return Calibrator.from_dict(data, str(self.bundle.path)) if data else None

    def translate(self, texts: Sequence[str], config: DecodeConfig | None = None, batch_size: int = 64,
                  return_attention: bool = False, progress: Callable[[int], None] | None = None,
                  on_step: Callable[[list[int], list[list[int]]], None] | None = None,
                  signals: bool = False, confidence: bool = False, **options: Any) -> list[Translation]:
        """Translate `texts` (any length, in order) with `config` (default: `default_decoding`);
        `options` are DecodeConfig fields applied over it. `on_step` sees every sampling step
        (`decoding.search`; engines that cannot stream never call it). `signals` adds each output's confidence
        signals, `confidence` its calibrated confidence (a calibrated checkpoint only; translator/inference/confidence.py)."""
        config = decode_config(config, self.default_decoding, **options)
        calibrator = self._require_calibrator() if confidence else None
        if self.engine.max_tgt_len:
            config = config.replace(max_len=min(config.max_len, int(self.engine.max_tgt_len)))  # learned positions stop there
        if config.lm_weight and self.bundle.empty_source is None:
            raise ValueError(f"{self.bundle.path.name} has no reply language model for anti-LM re-ranking: it was not "
                             "trained as a chat model with context dropout (--data.context_dropout 0.1); "
                             "set lm_weight 0")
        if config.backward_weight and self.backward is None:
            raise ValueError(f"backward_weight {config.backward_weight} (MMI-bidi re-ranking) needs a backward model "
                             "of p(message | reply): give --backward CKPT (README, Chat), or set backward_weight 0")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        tok = self.tokenizer
        results: list[Translation | None] = [None] * len(texts)
        encoded: list[tuple[int, list[int], bool]] = []
        for i, text in enumerate(texts):
            ids = tok.encode_src([text])[0] if text and text.strip() else []
            if not ids:
                results[i] = Translation("", 0.0, [("", 0.0)], [], [])
                continue
            truncated = len(ids) > self.max_src_tokens
            if truncated:
                log.warning("input %d has %d tokens; truncated to the model's limit of %d",
                            i + 1, len(ids), self.max_src_tokens)
                ids = ids[: self.max_src_tokens]
            encoded.append((i, ids, truncated))
        if progress is not None and len(encoded) < len(texts):
            progress(len(texts) - len(encoded))
        encoded.sort(key=lambda item: len(item[1]))  # length-sorted batches waste little padding
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            hyps = self._decode([ids for _, ids, _ in chunk], config, return_attention, on_step)
            texts_out = [tok.decode_tgt([h.tokens for h in sentence]) for sentence in hyps]
            for (i, ids, truncated), sentence, outs in zip(chunk, hyps, texts_out):
                best = sentence[0]
                results[i] = Translation(
                    text=outs[0], score=float(best.normalized),
                    nbest=[(t, float(h.normalized)) for t, h in zip(outs, sentence)],
                    src_pieces=[tok.src.id_to_piece(x) for x in ids],
                    tgt_pieces=tok.tgt_pieces(best.tokens),
                    attention=best.attention.float().cpu() if best.attention is not None else None,
                    truncated=truncated, tokens=list(best.tokens), hypotheses=list(sentence))
                if signals or confidence:
                    found = self._signals(ids, best, config)
                    results[i].signals = found
                    results[i].confidence = calibrator(found) if calibrator is not None else None
            if progress is not None:
                progress(len(chunk))
        return [r for r in results if r is not None]

    def _require_calibrator(self) -> Calibrator:
        calibrator = self.calibrator
        if calibrator is None:
            raise ValueError(f"{self.bundle.path} has no confidence calibrator; fit one on its validation split "
                             f"with `translator calibrate {self.bundle.path}`")
        return calibrator

    def _signals(self, ids: list[int], best: Hypothesis, config: DecodeConfig) -> dict[str, float]:
        """The confidence signals of one output, from its source alone (never from its batch)."""
        greedy = config.replace(method="greedy", nbest=1, candidates=0, lm_weight=0.0, length_bonus=0.0)
        greedy_tokens = self._decode([ids], greedy, False)[0][0].tokens
        log_probs, mass = self.engine.step_scores(ids, best.tokens, best.finished)
        return sentence_signals(len(ids), best.tokens, log_probs, mass, greedy_tokens)

    def _decode(self, batch: list[list[int]], config: DecodeConfig, return_attention: bool,
                on_step: Callable[[list[int], list[list[int]]], None] | None = None) -> list[list[Hypothesis]]:
        """Source ids of one batch (unpadded) -> hypotheses per sentence, best first, re-ranked and cut to nbest."""
        results = self.engine.search(batch, config, return_attention, on_step=on_step)
        backward = self.backward_scores if self.backward is not None else None
        return rank(results, config, self.engine.score, self.bundle.empty_source, backward, batch)

    def perplexity(self, sources: Sequence[str], targets: Sequence[str], batch_size: int = 64) -> float:
        """exp(mean NLL per target token, eos included) of `targets` given `sources`, by teacher forcing.

        Pairs with an empty source are skipped; over-long sources and targets are cut to the model's limits.
        """
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        srcs, tgts = self.encode_pairs(sources, targets)
        pairs = [(s, t) for s, t in zip(srcs, tgts) if s]
        if not pairs:
            raise ValueError("no pair with a non-empty source to score")
        scores = self.score_ids([s for s, _ in pairs], [t for _, t in pairs], batch_size)
        return math.exp(-sum(scores) / sum(len(t) + 1 for _, t in pairs))

    def encode_pairs(self, sources: Sequence[str], targets: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Source and target ids cut to the model's limits (what scoring by teacher forcing can read)."""
        tok = self.tokenizer
        limit = self.engine.max_tgt_len or DEFAULT_MAX_LEN
        return ([s[: self.max_src_tokens] for s in tok.encode_src(list(sources))],
                [t[: limit - 1] for t in tok.encode_tgt(list(targets))])

    def score_ids(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                  batch_size: int = 64) -> list[float]:
        """log p(target_i | source_i), eos included, by teacher forcing in length-sorted batches; input order.
        Sources must be non-empty."""
        return _batched(self.engine.score, sources, targets, batch_size)

    def backward_scores(self, contexts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]],
                        batch_size: int = 64) -> list[float]:
        """log p(context_i | reply_i) under the backward model (its sources are the replies), in length-sorted
        batches; -inf for an empty reply (nothing to read). Needs `backward`."""
        if self.backward_engine is None:
            raise ValueError("no backward model loaded: give --backward CKPT")
        scores = [-math.inf] * len(replies)
        rows = [i for i, r in enumerate(replies) if r]
        out = _batched(self.backward_engine.score, [replies[i] for i in rows], [contexts[i] for i in rows], batch_size)
        for i, value in zip(rows, out):
            scores[i] = value
        return scores


def _batched(score: Callable[[list[list[int]], list[list[int]]], list[float]], sources: Sequence[Sequence[int]],
             targets: Sequence[Sequence[int]], batch_size: int) -> list[float]:
    """An engine's `score` over many pairs: length-sorted batches (little padding), results in input order."""
    order = sorted(range(len(sources)), key=lambda i: (len(sources[i]), len(targets[i])))
    scores = [0.0] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        for i, value in zip(rows, score([list(sources[i]) for i in rows], [list(targets[i]) for i in rows])):
            scores[i] = float(value)
    return scores
