"""Ensemble decoding: several checkpoints as one model of the four-method interface (models/base.py).

`Ensemble(members)` gives, for every next token, the mean of its members' log-probabilities
(log-softmax in float32); the decoders' own log-softmax of that mean renormalises it (the
normalised geometric mean of the members' distributions). Its state, `EnsembleState`, holds one
state per member, and `expand` / `select` act on every one of them, so greedy search, beam search,
sampling and anti-LM re-ranking drive an ensemble unchanged, and each member keeps its own form of
the source fields. Members may be of different families (a Transformer with an LSTM); they must
share one tokenizer, hence one target vocabulary and the special ids: `load_ensemble` checks
that, and that they translate the same language pair, with one message naming the files.
This is beside `translator average`, which averages the weights of one run into one model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from translator.artifacts.checkpoint import Bundle, load_bundle, tokenizer_id
from translator.models.base import DecoderState, Seq2Seq


def mean_log_probs(logits: Sequence[Tensor]) -> Tensor:
    """The mean over members of log-softmax(logits), in float32; each (..., V) -> (..., V)."""
    return torch.stack([x.float().log_softmax(-1) for x in logits]).mean(0)


def _mean_attention(states: Sequence[DecoderState]) -> Tensor | None:
    """The members' attention over the source averaged, (R, S), when every member carries one; else None."""
    weights = [s.attention for s in states]
    if not weights or any(w is None for w in weights):
        return None
    return torch.stack([w.float() for w in weights]).mean(0)


@dataclasses.dataclass
class EnsembleState(DecoderState):
    """One decoder state per member, each in its own form; rows are the same hypotheses in all of them.

    `memory` is unused (None) and `src_mask` is the batch's (B, S) mask as `init_state` got it;
    `attention` is the members' mean when all of them carry attention.
    """

    members: tuple[DecoderState, ...] = ()

    @property
    def num_rows(self) -> int:
        return self.members[0].num_rows

    def expand(self, k: int) -> "EnsembleState":
        """Every member's rows become k consecutive rows of their sentence (models/base.py)."""
        return self._with(tuple(m.expand(k) for m in self.members))

    def select(self, indices: Tensor) -> "EnsembleState":
        """Row i of every member's result is its row indices[i] (R',)."""
        return self._with(tuple(m.select(indices) for m in self.members))

    def _with(self, members: tuple[DecoderState, ...]) -> "EnsembleState":
        return dataclasses.replace(self, members=members, group=members[0].group, attention=_mean_attention(members))


class Ensemble(Seq2Seq):
    """Members decoding as one model: next-token scores are the mean of their log-probabilities.

    All members must have the same target vocabulary size and pad id (one tokenizer; `load_ensemble`
    checks the tokenizer itself). `max_src_len` is the smallest of the members' limits.
    """

    def __init__(self, members: Sequence[Seq2Seq]):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one model")
        for i, m in enumerate(members):
            if not isinstance(m, Seq2Seq):
                raise TypeError(f"ensemble member {i} must be a translator.models Seq2Seq, got {type(m).__name__}")
        sizes = {(_init(m).get("tgt_vocab_size"), getattr(m, "pad_id", None)) for m in members}
        if len(sizes) > 1:
            raise ValueError(f"ensemble members have different target vocabularies or pad ids (tgt_vocab_size, "
                             f"pad_id) = {sorted(sizes, key=str)}; an ensemble needs one tokenizer")
        self.members = nn.ModuleList(members)
        self.pad_id = getattr(members[0], "pad_id", None)
        limits = [m.max_src_len for m in members if m.max_src_len]
        self.max_src_len = min(limits) if limits else None

    def config(self) -> dict[str, Any]:
        """What the ensemble is made of (for reports; an ensemble is not itself a checkpoint)."""
        return {"class_path": f"{__name__}.Ensemble", "members": [m.config() for m in self.members]}

    @property
    def has_attention(self) -> bool:
        return all(m.has_attention for m in self.members)

    def encode(self, src: Tensor, src_mask: Tensor) -> tuple[Any, ...]:
        """src (B, S), src_mask (B, S) -> one memory per member."""
        return tuple(m.encode(src, src_mask) for m in self.members)

    def init_state(self, memory: tuple[Any, ...], src_mask: Tensor, need_attention: bool = False) -> EnsembleState:
        states = tuple(m.init_state(mem, src_mask, need_attention=need_attention)
                       for m, mem in zip(self.members, memory))
        return EnsembleState(memory=None, src_mask=src_mask, need_attention=need_attention, members=states)

    def decode_step(self, tokens: Tensor, state: EnsembleState) -> tuple[Tensor, EnsembleState]:
        """tokens (R,) -> the members' mean log-probabilities (R, V) and the new state."""
        steps = [m.decode_step(tokens, s) for m, s in zip(self.members, state.members)]
        return mean_log_probs([logits for logits, _ in steps]), state._with(tuple(s for _, s in steps))

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: (B, S), (B, S), (B, T) -> the members' mean log-probabilities (B, T, V)."""
        return mean_log_probs([m(src, src_mask, tgt_in) for m in self.members])


def _init(model: Seq2Seq) -> dict[str, Any]:
    try:
        return dict(model.config().get("init_args") or {})
    except AttributeError:  # a model built without _record_config
        return {}


@dataclasses.dataclass
class EnsembleBundle(Bundle):
    """A Bundle whose model is an `Ensemble` of the checkpoints `members` (data and tokenizer: the first's)."""

    members: list[Bundle] = dataclasses.field(default_factory=list)

    @property
    def architecture(self) -> str:
        return f"ensemble of {len(self.members)}: " + " + ".join(b.architecture for b in self.members)

    @property
    def paths(self) -> list[Path]:
        return [b.path for b in self.members]

    @property
    def calibrator(self) -> dict[str, Any] | None:
        """None: a member's calibrator was fitted on that member's signals, not on the ensemble's."""
        return None

    @property
    def parent(self) -> dict[str, Any] | None:
        return None

    @property
    def empty_source(self) -> list[int] | None:
        """The empty context for anti-LM re-ranking, when every member learned p(reply)."""
        sources = [b.empty_source for b in self.members]
        return sources[0] if all(s is not None for s in sources) else None


def check_compatible(bundles: Sequence[Bundle]) -> None:
    """One ValueError naming the files unless every bundle has the first one's tokenizer, task and languages."""
    first = bundles[0]
    for other in bundles[1:]:
        if tokenizer_id(other.tokenizer.to_dict()) != tokenizer_id(first.tokenizer.to_dict()):
            raise ValueError(f"cannot ensemble {other.path} with {first.path}: they were trained with different "
                             "tokenizers, and an ensemble needs one tokenizer (the same target vocabulary); "
                             "train its members on the same data with the same tokenizer options, or give them "
                             "one --data.tokenizer_path")
        for what, a, b in (("task", first.task.name, other.task.name),
                           ("language pair", (first.src_lang, first.tgt_lang), (other.src_lang, other.tgt_lang))):
            if a != b:
                raise ValueError(f"cannot ensemble {other.path} with {first.path}: different {what} ({b} vs {a})")


def load_ensemble(paths: Sequence[str | Path], device: str | torch.device = "cpu") -> EnsembleBundle:
    """Load every checkpoint of `paths` (at least one) as one `Ensemble`, in eval mode on `device`."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("an ensemble needs at least one checkpoint; pass --ensemble CKPT CKPT ...")
    return ensemble_of([load_bundle(p, device=device) for p in paths], device)


def ensemble_of(bundles: Sequence[Bundle], device: str | torch.device = "cpu") -> EnsembleBundle:
    """Loaded bundles as one `Ensemble` (their modules are shared, not copied), after `check_compatible`."""
    check_compatible(bundles)
    first = bundles[0]
    model = Ensemble([b.model for b in bundles]).to(device).eval()
    return EnsembleBundle(model=model, tokenizer=first.tokenizer, meta=first.meta, members=bundles)
