"""Recurrent encoder-decoder with ONE fixed-size context vector (Sutskever et al. 2014; Cho et al. 2014).

The encoder reads the source and keeps only its final state. The decoder starts from that
state and, as in Cho et al., also sees the encoder's top-layer final hidden state `context`
at every step: concatenated with the input embedding and again in the output layer. There
is no attention, so everything about the source must squeeze through `context` — the
bottleneck that attention (attention.py) removes.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from translator.cpu_fastpaths import Dropout
from translator.models.base import DecoderState, Seq2Seq

#: The recurrent cells: a plain tanh RNN (the lectures' starting point), and the gated LSTM and GRU.
RNN_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
#: The same cells one step at a time (the attention decoder steps itself: input feeding).
RNN_STEP_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def source_lengths(src_mask: Tensor) -> Tensor:
    """src_mask (B, S) -> lengths (B,) on the CPU, at least 1 (pack_padded_sequence refuses 0)."""
    return src_mask.sum(1).clamp(min=1).cpu()


def reverse_padded(src: Tensor, src_mask: Tensor) -> Tensor:
    """Reverse the real tokens of each row, padding stays at the end: src (B, S) -> (B, S)."""
    S = src.size(1)
    lengths = src_mask.sum(1, keepdim=True)  # (B, 1)
    pos = torch.arange(S, device=src.device).unsqueeze(0)  # (1, S)
    index = torch.where(pos < lengths, lengths - 1 - pos, pos)  # (B, S) pads stay where they are
    return src.gather(1, index)


def run_packed(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run `rnn` over padded x (B, S, E) -> outputs (B, S, dirs*H), h_n and c_n (layers*dirs, B, H).

    Packing makes the final state the one at each row's last REAL token; padded outputs are 0.
    """
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = rnn(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # (B, S, dirs*H)
    h, c = final if isinstance(final, tuple) else (final, None)
    return out, h, c


@dataclasses.dataclass
class LSTMState(DecoderState):
    """memory = context (B, H); h and c (B, L, H) batch first (c is None for a GRU or plain RNN: no cell state)."""

    # Copied form: `expand` copies the small context once; repeating it every step cost more.
    share_source = False

    h: Tensor | None = None
    c: Tensor | None = None


class LSTMSeq2Seq(Seq2Seq):
    """Multi-layer RNN/LSTM/GRU encoder-decoder whose only view of the source is one context vector."""

    max_src_len = None

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        emb_size: int = 256,
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.2,
        reverse_source: bool = True,
    ) -> None:
        """reverse_source: read the source backwards (Sutskever et al.'s trick: short first dependencies)."""
        super().__init__()
        self._record_config(locals())
        if cell not in RNN_CELLS:
            raise ValueError(f"cell must be one of {sorted(RNN_CELLS)}, got {cell!r}")
        self.pad_id = pad_id
        self.cell = cell
        self.reverse_source = reverse_source
        rnn_dropout = dropout if num_layers > 1 else 0.0
        self.src_emb = nn.Embedding(src_vocab_size, emb_size)
        self.tgt_emb = nn.Embedding(tgt_vocab_size, emb_size)
        self.encoder = RNN_CELLS[cell](emb_size, hidden_size, num_layers, batch_first=True, dropout=rnn_dropout)
        # The decoder input is [embedding; context], as in Cho et al. 2014.
        self.decoder = RNN_CELLS[cell](emb_size + hidden_size, hidden_size, num_layers, batch_first=True,
                                       dropout=rnn_dropout)
        # Output layer sees decoder state, context and previous word, then projects through emb_size.
        self.readout = nn.Linear(2 * hidden_size + emb_size, emb_size)
        self.out = nn.Linear(emb_size, tgt_vocab_size)
        self.dropout = Dropout(dropout)

    @classmethod
    def attention_note(cls, config: dict) -> str:
        cell = str(config.get("cell", "lstm")).upper()
        return (f"**This {cell} model has no attention**: the encoder squeezes the whole source into one fixed "
                "context vector, so there is no heatmap to show.")

    def encode(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """src, src_mask (B, S) -> final encoder state (h, c), each (B, L, H) (c None for a GRU or RNN)."""
        if self.reverse_source:
            src = reverse_padded(src, src_mask)
        x = self.dropout(self.src_emb(src))  # (B, S, E)
        _, h, c = run_packed(self.encoder, x, source_lengths(src_mask))
        return h.transpose(0, 1), None if c is None else c.transpose(0, 1)  # (B, L, H)

    def init_state(self, memory: tuple[Tensor, Tensor | None], src_mask: Tensor,
                   need_attention: bool = False) -> LSTMState:
        """Decoder starts from the encoder's final state; memory = top-layer final hidden (B, H)."""
        h, c = memory
        return LSTMState(memory=h[:, -1], src_mask=src_mask, need_attention=need_attention, h=h, c=c)

    def _decode(self, tokens: Tensor, context: Tensor, h: Tensor, c: Tensor | None
                ) -> tuple[Tensor, Tensor, Tensor | None]:
        """tokens (B, T), context (B, H), h/c (B, L, H) -> features (B, T, E), new h/c (B, L, H)."""
        emb = self.dropout(self.tgt_emb(tokens))  # (B, T, E)
        ctx = context.unsqueeze(1).expand(-1, emb.size(1), -1)  # (B, T, H)
        hx = h.transpose(0, 1).contiguous()  # (L, B, H) as nn.LSTM wants
        if c is not None:
            hx = (hx, c.transpose(0, 1).contiguous())
        out, final = self.decoder(torch.cat([emb, ctx], -1), hx)  # out (B, T, H)
        h, c = final if isinstance(final, tuple) else (final, None)
        pre = torch.tanh(self.readout(torch.cat([self.dropout(out), ctx, emb], -1)))  # (B, T, E)
        return self.dropout(pre), h.transpose(0, 1), None if c is None else c.transpose(0, 1)  # (B, L, H)

    def decode_step(self, tokens: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """tokens (B,) -> logits (B, V) and the next state."""
        features, h, c = self._decode(tokens.unsqueeze(1), state.per_row(state.memory), state.h, state.c)
        return self.out(features.squeeze(1)), dataclasses.replace(state, h=h, c=c)  # (B, V)

    def features(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing in one RNN call (no input feeding): -> features (B, T, E); logits = self.out(features)."""
        h, c = self.encode(src, src_mask)
        return self._decode(tgt_in, h[:, -1], h, c)[0]
