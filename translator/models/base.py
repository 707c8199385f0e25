"""The one interface every model exposes, and the explicit decoder state it threads through.

    encode(src, src_mask)              -> memory           # model-specific, opaque to decoders
    init_state(memory, src_mask)       -> DecoderState
    decode_step(tokens, state)         -> (logits, state)  # tokens (B,), logits (B, V)
    forward(src, src_mask, tgt_in)     -> logits           # (B, T, V), teacher forcing

Training takes `forward` in two parts, so that the loss can run the output layer a chunk of rows at a
time (translator/training/loss.py) and the (B, T, V) logits never exist whole:

    features(src, src_mask, tgt_in)    -> features         # (B, T, D), forward = out(features)
    out                                                    # nn.Linear D -> V, the output layer

`src_mask` is True for real tokens and False for padding. Decoders (greedy, beam, sampling)
use only these four methods plus `DecoderState.expand` and `.select`, never the concrete model type.

How a sentence's rows share its source (the one rule):

- A state has R rows, one per hypothesis, in groups of `group` consecutive rows that continue one
  source sentence: row r belongs to sentence r // group. `init_state` gives group 1; `expand(k)`
  turns every row into k consecutive rows of its sentence (its beams or samples): group * k.
- Fields computed from the source alone (`source_fields`: memory, src_mask, cross-attention keys
  and values...) are therefore equal on all rows of a group. A state class stores them in one of
  two forms, chosen once for speed by `share_source`; both decode to the same logits (tested for
  every family over whole beam searches):
  shared (True): one stored row per group, R / group rows; row r reads source row r // group,
  so `decode_step` must honour `rows_per_source` (the Transformer and the attention model attend
  with a group's queries together). Nothing is ever copied.
  copied (False, the default, so a model written without groups just works): one stored row per
  row, R rows; `expand` copies them once, and `decode_step` may ignore groups (the LSTM: repeating
  its small context vector every step cost more than that one copy).
- `select(indices)` assumes nothing about `indices`: row i of the result is row indices[i], and
  the source fields follow. When every run of `group` results comes from one sentence (beams
  reordered within their sentences, finished sentences dropped), the groups stay; when moreover
  they are the old sentences in their old order (beam reordering, group > 1), the source fields
  are kept as they are, uncopied, in either form. Any other indices give group 1.
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

    Subclasses add their own fields (hidden/cell, key/value cache, ...), one row per hypothesis
    unless named in `source_fields` (see the module docstring for groups and the two forms).
    `attention` holds the last step's attention over the source, (R, S), when the state was
    built with `need_attention=True`; otherwise None.
    """

    #: Fields computed from the source alone: equal on every row of a group.
    source_fields: ClassVar[tuple[str, ...]] = ("memory", "src_mask")
    #: Store the source fields once per group (shared) rather than once per row (copied).
    share_source: ClassVar[bool] = False

    memory: Any
    src_mask: Tensor  # (R / rows_per_source, S) True = real token
    attention: Tensor | None = None
    need_attention: bool = False
    group: int = 1  # consecutive rows that continue one sentence

    @property
    def rows_per_source(self) -> int:
        """Rows that read one stored source row: `group` in the shared form, 1 in the copied form."""
        return self.group if self.share_source else 1

    @property
    def num_rows(self) -> int:
        """R, the number of hypotheses."""
        return self.src_mask.size(0) * self.rows_per_source

    def per_row(self, source: Tensor) -> Tensor:
        """A source field (R / rows_per_source, ...) -> one row per hypothesis (R, ...), for models
        that do not exploit groups (a no-op in the copied form)."""
        g = self.rows_per_source
        return source if g == 1 else source.repeat_interleave(g, 0)

    def expand(self, k: int) -> "DecoderState":
        """Each row becomes k consecutive rows of its sentence: group * k; source fields copied only in the copied form."""
        indices = torch.arange(self.num_rows, device=self.src_mask.device).repeat_interleave(k)  # (R*k,)
        changes = self._index_rows(indices)
        if not self.share_source:
            changes.update(self._index_source(indices))
        changes["group"] = self.group * k
        return dataclasses.replace(self, **changes)

    def select(self, indices: Tensor) -> "DecoderState":
        """Reorder / repeat / prune rows: row i of the result is row indices[i] of self (R',).

        Groups and source fields follow the rule in the module docstring.
        """
        changes = self._index_rows(indices)
        sentences = indices // self.group  # (R',) the sentence each result row continues
        whole, same = self._groups_kept(sentences)
        if same:  # beams moved within their sentences: every stored source row is still right
            return dataclasses.replace(self, **changes)
        if not self.share_source:
            source_rows = indices  # (R',) one stored row per row
        elif whole:
            source_rows = sentences[::self.group]  # (R'/group,) one stored row per kept group
        else:
            source_rows = sentences  # (R',) one per row: group 1 from now on
        changes.update(self._index_source(source_rows))
        changes["group"] = self.group if whole else 1
        return dataclasses.replace(self, **changes)

    def _index_rows(self, indices: Tensor) -> dict[str, Any]:
        """Every field but the source fields, indexed by `indices` (R',)."""
        return {f.name: _select(getattr(self, f.name), indices)
                for f in dataclasses.fields(self) if f.name not in self.source_fields}

    def _index_source(self, rows: Tensor) -> dict[str, Any]:
        """The source fields, their stored rows indexed by `rows`."""
        return {name: _select(getattr(self, name), rows) for name in self.source_fields}

    def _groups_kept(self, sentences: Tensor) -> tuple[bool, bool]:
        """sentences (R',) of the result rows -> (every run of `group` rows is one sentence,
        and those are all the old sentences in their old order).

        One host sync when group > 1; none for group 1, where every row is a group of its own.
        """
        g, n = self.group, self.num_rows // self.group
        if g == 1:
            return True, False
        if sentences.numel() % g:
            return False, False
        blocks = sentences.view(-1, g)  # (R'/g, g)
        whole = (blocks == blocks[:, :1]).all()
        if blocks.size(0) != n:
            return bool(whole), False
        same = whole & (blocks[:, 0] == torch.arange(n, device=sentences.device)).all()
        whole_kept, same_kept = torch.stack([whole, same]).tolist()
        return whole_kept, same_kept


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

    def features(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing up to the output layer `self.out`: src (B, S), src_mask (B, S), tgt_in (B, T) = bos + y
        -> features (B, T, D)."""
        raise NotImplementedError

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: src (B, S), src_mask (B, S), tgt_in (B, T) = bos + y -> logits (B, T, V)."""
        return self.out(self.features(src, src_mask, tgt_in))

    @property
    def has_attention(self) -> bool:
        """Whether decoder states can carry attention weights over the source (for plots)."""
        return False

    @classmethod
    def attention_note(cls, config: dict) -> str:
        """One sentence for the app: what this model's attention heatmap shows (or why there is none),
        given its constructor arguments."""
        return "This model's decoder states carry no attention, so there is no heatmap to show."
