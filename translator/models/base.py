"""The one interface every model exposes, and the explicit decoder state it threads through.

    encode(src, src_mask)              -> memory           # model-specific, opaque to decoders
    init_state(memory, src_mask)       -> DecoderState
    decode_step(tokens, state)         -> (logits, state)  # tokens (B,), logits (B, V)
    forward(src, src_mask, tgt_in)     -> logits           # (B, T, V), teacher forcing

`src_mask` is True for real tokens and False for padding. Decoders (greedy, beam, sampling)
use only these four methods plus `DecoderState.select` and `.expand`, never the concrete model type.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


def _select(value: Any, indices: Tensor) -> Any:
    """Index every tensor inside `value` along the batch dimension (dim 0)."""
    if isinstance(value, Tensor):
        return value.index_select(0, indices)
    if isinstance(value, DecoderState):
        return value.select(indices)
    if isinstance(value, (list, tuple)):
        return type(value)(_select(v, indices) for v in value)
    if isinstance(value, dict):
        return {k: _select(v, indices) for k, v in value.items()}
    return value  # ints, bools, None: shared by every row


@dataclasses.dataclass
class DecoderState:
    """Everything a decoder step needs, batch first; no state is ever kept on modules.

    Subclasses add their own fields (hidden/cell, key/value cache, ...). `attention` holds the
    last step's attention over the source, (B, S), when the state was built with
    `need_attention=True`; otherwise None.
    """

    #: Fields computed from the source alone (rows of one sentence's beams are identical there).
    source_fields: ClassVar[tuple[str, ...]] = ("memory", "src_mask")

    memory: Any
    src_mask: Tensor  # (B, S) True = real token
    attention: Tensor | None = None
    need_attention: bool = False
    #: Whether the model's decode_step handles `group` > 1. A state class that leaves this False
    #: (a model written without it, or the LSTM, whose only source field is a small context
    #: vector) always has group 1: `expand` then copies the source fields once.
    supports_groups: ClassVar[bool] = False

    #: Rows per source row: row r reads row r // group of the source fields (beam search keeps its
    #: K hypotheses of a sentence as K consecutive rows over one uncopied source). The Transformer
    #: and the attention model attend with a group's rows together instead of repeating the memory.
    group: int = 1

    def expand(self, k: int) -> "DecoderState":
        """Each row becomes k consecutive rows with its source; shared, not copied, with supports_groups."""
        rows = torch.arange(self.src_mask.size(0) * self.group, device=self.src_mask.device)
        indices = rows.repeat_interleave(k)  # (R*k,)
        if not self.supports_groups:
            return self.select(indices)
        changes = {f.name: _select(getattr(self, f.name), indices)
                   for f in dataclasses.fields(self) if f.name not in self.source_fields}
        changes["group"] = self.group * k
        return dataclasses.replace(self, **changes)

    def select(self, indices: Tensor, same_source: bool = False) -> "DecoderState":
        """Reorder / repeat / prune rows: row i of the result is row indices[i] of self.

        same_source=True promises that row i and row indices[i] hold the same source sentence
        (beam search reordering one sentence's beams): the source fields then stay as they are,
        which saves copying the encoder memory (and cross-attention keys/values) every step.
        With group > 1, indices that keep whole groups together (each run of `group` results
        coming from one source row, as when beam search drops finished sentences) keep the
        grouping; any other indices give one source row per row (group 1).
        """
        changes = {f.name: _select(getattr(self, f.name), indices)
                   for f in dataclasses.fields(self) if f.name not in self.source_fields}
        if same_source:
            return dataclasses.replace(self, **changes)
        source_rows, group = indices // self.group, self.group  # (R',)
        if group > 1:
            blocks = source_rows.view(-1, group) if source_rows.numel() % group == 0 else None
            if blocks is not None and bool((blocks == blocks[:, :1]).all()):
                source_rows = blocks[:, 0]  # (R'/group,) whole groups stay together
            else:
                group = 1
        changes.update({name: _select(getattr(self, name), source_rows) for name in self.source_fields}, group=group)
        return dataclasses.replace(self, **changes)


class Seq2Seq(nn.Module):
    """Base class of the three model families; see the module docstring for the interface.

    Every subclass takes `src_vocab_size`, `tgt_vocab_size` and `pad_id` (linked from the data,
    never typed twice) plus its own typed size options, and records them with `_record_config`
    so that a checkpoint can rebuild it from plain data (`config()`).
    """

    #: Longest source the model accepts; longer inputs are truncated by callers (with a warning).
    max_src_len: int | None = None

    def _record_config(self, frame_locals: dict[str, Any]) -> None:
        names = inspect.signature(type(self).__init__).parameters
        self._config = {k: frame_locals[k] for k in names if k != "self"}

    def config(self) -> dict[str, Any]:
        """{'class_path': ..., 'init_args': {...}} — enough to rebuild this model."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self._config)}

    def encode(self, src: Tensor, src_mask: Tensor) -> Any:
        """src (B, S) token ids, src_mask (B, S) -> model-specific memory."""
        raise NotImplementedError

    def init_state(self, memory: Any, src_mask: Tensor, need_attention: bool = False) -> DecoderState:
        """Start decoding from the encoder's memory; no token has been read yet."""
        raise NotImplementedError

    def decode_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """tokens (B,) the previous output -> logits (B, V) for the next one, and the new state."""
        raise NotImplementedError

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: src (B, S), src_mask (B, S), tgt_in (B, T) = bos + y -> logits (B, T, V)."""
        raise NotImplementedError

    @property
    def has_attention(self) -> bool:
        """Whether decoder states can carry attention weights over the source (for plots)."""
        return False

    @classmethod
    def attention_note(cls, config: dict) -> str:
        """One sentence for the app: what this model's attention heatmap shows (or why there is none),
        given its constructor arguments."""
        return "This model's decoder states carry no attention, so there is no heatmap to show."
