"""Recurrent encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015).

A bidirectional RNN/LSTM/GRU encodes the source into one vector per token (the memory). At each
step the decoder RNN reads [previous word; previous attentional vector] (input feeding),
its top hidden state queries the memory (additive, dot or general scores; padding masked),
and the attentional vector tanh(W [context; hidden]) feeds the output layer. All scorers
share this Luong-style step; `bahdanau` only changes the score function.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from translator.cpu_fastpaths import Dropout
from translator.models.base import DecoderState, Seq2Seq
from translator.models.lstm import RNN_CELLS, RNN_STEP_CELLS, run_packed, source_lengths

ATTENTIONS = ("bahdanau", "dot", "general")


class Attention(nn.Module):
    """Scores a query against precomputed keys: additive (bahdanau), dot or general (Luong)."""

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"attention must be one of {list(ATTENTIONS)}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(f"dot attention needs dec_hidden_size ({query_size}) == 2 * enc_hidden_size "
                             f"({memory_size}); use attention='general' or change the sizes")
        self.kind = kind
        if kind == "bahdanau":
            self.key_proj = nn.Linear(memory_size, attention_size, bias=False)
            self.query_proj = nn.Linear(query_size, attention_size, bias=False)
            self.v = nn.Linear(attention_size, 1, bias=False)
        elif kind == "general":
            # q^T W k == q . (W k): projecting the keys once lets every step use a dot product.
            self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        """memory (B, S, M) -> keys (B, S, A); computed once per source, kept in the decoder state."""
        return memory if self.kind == "dot" else self.key_proj(memory)

    def forward(self, query: Tensor, keys: Tensor, src_mask: Tensor) -> Tensor:
        """query (B, G, Q): G queries per source row; keys (B, S, A), src_mask (B, S) True = real
        -> weights (B, G, S), 0 on padding."""
        if self.kind == "bahdanau":
            q = self.query_proj(query).unsqueeze(2)  # (B, G, 1, A)
            scores = self.v(torch.tanh(keys.unsqueeze(1) + q)).squeeze(-1)  # (B, G, S)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, G, S)
        # finfo.min rather than -inf: a fully padded row gives uniform weights instead of NaN.
        scores = scores.masked_fill(~src_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        return scores.softmax(-1)


@dataclasses.dataclass
class AttentionState(DecoderState):
    """memory (B, S, 2He); keys (B, S, A) projected once; h, c (B, L, Hd); feed (B, Hd)."""

    share_source = True  # a group's queries score one row of keys together (Attention takes (B, G, Q))
    source_fields = ("memory", "src_mask", "keys")

    keys: Tensor | None = None
    h: Tensor | None = None
    c: Tensor | None = None
    feed: Tensor | None = None


class AttentionSeq2Seq(Seq2Seq):
    """Bidirectional recurrent encoder, attentional recurrent decoder with input feeding."""

    max_src_len = None

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        attention: Literal["bahdanau", "dot", "general"] = "bahdanau",
        emb_size: int = 256,
        enc_hidden_size: int = 256,
        dec_hidden_size: int = 512,
        enc_layers: int = 1,
        dec_layers: int = 1,
        attention_size: int = 256,
        dropout: float = 0.2,
    ) -> None:
        """enc_hidden_size is per direction; attention_size is used by bahdanau only."""
        super().__init__()
        self._record_config(locals())
        if cell not in RNN_CELLS:
            raise ValueError(f"cell must be one of {sorted(RNN_CELLS)}, got {cell!r}")
        self.pad_id = pad_id
        self.cell = cell
        memory_size = 2 * enc_hidden_size
        self.src_emb = nn.Embedding(src_vocab_size, emb_size)
        self.tgt_emb = nn.Embedding(tgt_vocab_size, emb_size)
        self.encoder = RNN_CELLS[cell](emb_size, enc_hidden_size, enc_layers, batch_first=True,
                                       bidirectional=True, dropout=dropout if enc_layers > 1 else 0.0)
        # Bridge: both directions' top final states -> every decoder layer's initial hidden state.
        self.bridge = nn.Linear(memory_size, dec_layers * dec_hidden_size)
        cell_type = RNN_STEP_CELLS[cell]
        self.cells = nn.ModuleList(
            cell_type(emb_size + dec_hidden_size if i == 0 else dec_hidden_size, dec_hidden_size)
            for i in range(dec_layers))
        self.attention = Attention(attention, dec_hidden_size, memory_size, attention_size)
        self.combine = nn.Linear(memory_size + dec_hidden_size, dec_hidden_size, bias=False)
        self.out = nn.Linear(dec_hidden_size, tgt_vocab_size)
        self.dropout = Dropout(dropout)

    @property
    def has_attention(self) -> bool:
        return True

    @classmethod
    def attention_note(cls, config: dict) -> str:
        kind = config.get("attention", "bahdanau")
        return f"The heatmap shows where the decoder's {kind} attention looked in the source for each output piece."

    def encode(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """src, src_mask (B, S) -> (memory (B, S, 2He) zero on padding, final (B, 2He) both directions)."""
        x = self.dropout(self.src_emb(src))  # (B, S, E)
        memory, h, _ = run_packed(self.encoder, x, source_lengths(src_mask))  # h (2*L, B, He)
        final = torch.cat([h[-2], h[-1]], -1)  # (B, 2He) forward at last real token, backward at first
        return memory, final

    def init_state(self, memory: tuple[Tensor, Tensor], src_mask: Tensor,
                   need_attention: bool = False) -> AttentionState:
        """Bridge the final encoder state to the decoder and project the attention keys once."""
        values, final = memory
        B, L, H = final.size(0), len(self.cells), self.out.in_features
        h = torch.tanh(self.bridge(final)).view(B, L, H)  # (B, L, Hd)
        c = torch.zeros_like(h) if self.cell == "lstm" else None
        feed = h.new_zeros(B, H)  # (B, Hd) no attentional vector before the first step
        return AttentionState(memory=values, src_mask=src_mask, need_attention=need_attention,
                              keys=self.attention.project_keys(values), h=h, c=c, feed=feed)

    def _step(self, emb: Tensor, feed: Tensor, h: list[Tensor], c: list[Tensor] | None, keys: Tensor,
              values: Tensor, src_mask: Tensor, group: int = 1
              ) -> tuple[Tensor, list[Tensor], list[Tensor] | None, Tensor]:
        """One decoder step: emb (B, E), feed (B, Hd), h/c per layer (B, Hd) -> feed, h, c, weights (B, S).

        keys, values, src_mask have one row per `group` rows (beam hypotheses of one source).
        """
        x = torch.cat([emb, feed], -1)  # (B, E + Hd) input feeding
        new_h, new_c = [], []
        for i, cell in enumerate(self.cells):
            if i:
                x = self.dropout(x)
            if c is None:
                x = cell(x, h[i])  # (B, Hd)
            else:
                x, ci = cell(x, (h[i], c[i]))  # (B, Hd)
                new_c.append(ci)
            new_h.append(x)
        B = x.size(0)
        weights = self.attention(x.view(B // group, group, -1), keys, src_mask)  # (B/group, group, S)
        context = torch.bmm(weights, values).view(B, -1)  # (B, 2He)
        weights = weights.view(B, -1)  # (B, S)
        feed = torch.tanh(self.combine(torch.cat([context, x], -1)))  # (B, Hd)
        return feed, new_h, None if c is None else new_c, weights

    def decode_step(self, tokens: Tensor, state: AttentionState) -> tuple[Tensor, AttentionState]:
        """tokens (B,) -> logits (B, V) and the next state (with attention (B, S) if requested)."""
        c = None if state.c is None else list(state.c.unbind(1))
        emb = self.dropout(self.tgt_emb(tokens))  # (B, E)
        feed, h, c, weights = self._step(emb, state.feed, list(state.h.unbind(1)), c, state.keys, state.memory,
                                         state.src_mask, state.rows_per_source)
        logits = self.out(self.dropout(feed))  # (B, V)
        return logits, dataclasses.replace(
            state, h=torch.stack(h, 1), c=None if c is None else torch.stack(c, 1), feed=feed,  # (B, L, Hd)
            attention=weights if state.need_attention else None)

    def features(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing -> features (B, T, Hd); loops over time because each step feeds the previous
        attentional vector."""
        state = self.init_state(self.encode(src, src_mask), src_mask)
        emb = self.dropout(self.tgt_emb(tgt_in))  # (B, T, E)
        h = list(state.h.unbind(1))
        c = None if state.c is None else list(state.c.unbind(1))
        feed, feeds = state.feed, []
        for t in range(tgt_in.size(1)):
            feed, h, c, _ = self._step(emb[:, t], feed, h, c, state.keys, state.memory, src_mask)
            feeds.append(feed)
        return self.dropout(torch.stack(feeds, 1))  # (B, T, Hd): one projection for all steps
