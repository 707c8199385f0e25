"""Pre-layer-norm Transformer encoder-decoder (Vaswani et al. 2017) with cached incremental decoding.

Attention runs through `scaled_dot_product_attention` (boolean masks: True = attend), which is
`F.scaled_dot_product_attention` with the CPU fast paths of `translator.cpu_fastpaths`. The
decoder state carries each layer's self-attention keys/values, grown by one position per
step, and the cross-attention keys/values, computed once from the memory in `init_state`,
so a `decode_step` costs one position. With `decode_cache=False` the state keeps the prefix
instead and every step re-runs the decoder over it (same logits; for speed comparisons).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor, nn

from translator.cpu_fastpaths import Dropout, scaled_dot_product_attention
from translator.models.base import DecoderState, Seq2Seq

TIES = ("none", "decoder", "all")


def sinusoids(length: int, d_model: int) -> Tensor:
    """Fixed sinusoidal position encodings (length, D)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (length, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return table


def attend_mask(src_mask: Tensor) -> Tensor:
    """src_mask (B, S) -> boolean key mask (B, 1, 1, S), True = attend.

    A source with no real token would give a fully masked row (NaN); it attends everywhere instead.
    """
    mask = src_mask | ~src_mask.any(1, keepdim=True)  # (B, S)
    return mask[:, None, None, :]  # (B, 1, 1, S)


def split_heads(x: Tensor, n: int, heads: int) -> tuple[Tensor, ...]:
    """x (B, T, n*D) -> n tensors (B, H, T, D/H)."""
    B, T, _ = x.shape
    return x.view(B, T, n, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # n × (B, H, T, Dh)


def merge_heads(x: Tensor) -> Tensor:
    """x (B, H, T, Dh) -> (B, T, D)."""
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and an optional key/value cache."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False,
                cache: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, D), mask (B, 1, 1, T) or None -> (y (B, T, D), keys, values (B, H, T', Dh)).

        With `cache` (keys, values of earlier positions) x is the new position(s) only and
        attends to all of them: the causal order is implied by the cache.
        """
        q, k, v = split_heads(self.qkv(x), 3, self.heads)  # (B, H, T, Dh) each
        if cache is not None:
            k = torch.cat([cache[0], k], 2)  # (B, H, T'+T, Dh)
            v = torch.cat([cache[1], v], 2)
        p = self.dropout if self.training else 0.0
        y = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        return self.out(merge_heads(y)), k, v  # (B, T, D)


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder to the memory; keys/values come from `project_memory`."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = num_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """memory (B, S, D) -> keys, values (B, H, S, Dh)."""
        k, v = split_heads(self.kv(memory), 2, self.heads)
        return k, v

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor, need_weights: bool = False, group: int = 1
                ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), k/v (B/group, H, S, Dh), mask (B/group, 1, 1, S) -> y (B, T, D), weights (B, T, S) or None.

        With group > 1 each run of `group` rows of x shares one source row (beam hypotheses): their
        queries attend to it together as group*T query positions, so k/v are never repeated.
        """
        (q,) = split_heads(self.q(x), 1, self.heads)  # (B, H, T, Dh)
        B, H, T, Dh = q.shape
        if group > 1:  # (B/group, H, group*T, Dh)
            q = q.view(B // group, group, H, T, Dh).transpose(1, 2).reshape(B // group, H, group * T, Dh)
        if not need_weights:
            p = self.dropout if self.training else 0.0
            y, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p), None
        else:  # explicit softmax only when asked (plots): SDPA never materialises the weights
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(Dh)  # (B/group, H, group*T, S)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            y = weights @ v  # (B/group, H, group*T, Dh)
            weights = weights.mean(1).reshape(B, T, -1)  # (B, T, S) averaged over heads
        if group > 1:
            y = y.view(B // group, H, group, T, Dh).transpose(1, 2).reshape(B, H, T, Dh)
        return self.out(merge_heads(y)), weights  # (B, T, D)


class FeedForward(nn.Sequential):
    """Position-wise D -> F -> D."""

    def __init__(self, d_model: int, ff_size: int, activation_dropout: float, activation: str) -> None:
        act = nn.GELU() if activation == "gelu" else nn.ReLU()
        super().__init__(nn.Linear(d_model, ff_size), act, Dropout(activation_dropout), nn.Linear(ff_size, d_model))


class EncoderLayer(nn.Module):
    """x + SelfAttn(LN(x)); x + FF(LN(x))."""

    def __init__(self, d_model: int, num_heads: int, ff_size: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, activation: str) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, num_heads, attention_dropout)
        self.ff = FeedForward(d_model, ff_size, activation_dropout, activation)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, S, D), mask (B, 1, 1, S) -> (B, S, D)."""
        x = x + self.dropout(self.attn(self.norm1(x), mask)[0])
        return x + self.dropout(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    """x + causal SelfAttn(LN(x)); x + CrossAttn(LN(x), memory); x + FF(LN(x))."""

    def __init__(self, d_model: int, num_heads: int, ff_size: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, activation: str) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = SelfAttention(d_model, num_heads, attention_dropout)
        self.cross_attn = CrossAttention(d_model, num_heads, attention_dropout)
        self.ff = FeedForward(d_model, ff_size, activation_dropout, activation)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, cross_kv: tuple[Tensor, Tensor], src_mask: Tensor,
                cache: tuple[Tensor, Tensor] | None = None, need_weights: bool = False, group: int = 1
                ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        """x (B, T, D) -> x (B, T, D), self-attention (keys, values) incl. cache, cross weights or None.

        Without `cache` x is the whole prefix (causal mask); with it, x is the new position(s).
        cross_kv and src_mask have one row per `group` rows of x (see CrossAttention).
        """
        a, k, v = self.self_attn(self.norm1(x), causal=cache is None, cache=cache)
        x = x + self.dropout(a)
        a, weights = self.cross_attn(self.norm2(x), *cross_kv, src_mask, need_weights, group)
        x = x + self.dropout(a)
        return x + self.dropout(self.ff(self.norm3(x))), (k, v), weights


@dataclasses.dataclass
class TransformerState(DecoderState):
    """memory (B, S, D); per decoder layer: cross (k, v) and self (k, v) caches (B, H, t, Dh).

    With `decode_cache=False` the caches are empty and `prefix` (B, t) holds the tokens read so far.
    """

    share_source = True  # cross-attention reads a group's queries against one memory row (CrossAttention)
    source_fields = ("memory", "src_mask", "cross_kv")

    cross_kv: list[tuple[Tensor, Tensor]] = dataclasses.field(default_factory=list)
    self_kv: list[tuple[Tensor, Tensor]] = dataclasses.field(default_factory=list)
    prefix: Tensor | None = None
    step: int = 0


class Transformer(Seq2Seq):
    """Pre-LN Transformer; embeddings ~ N(0, D^-1/2) scaled by sqrt(D) so tied output logits start at unit scale."""

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        d_model: int = 256,
        num_heads: int = 4,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        ff_size: int = 1024,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation: Literal["relu", "gelu"] = "relu",
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_len: int = 256,
        tie_embeddings: Literal["none", "decoder", "all"] = "decoder",
        decode_cache: bool = True,
    ) -> None:
        """dropout: embeddings and residual branches (as in the paper); attention_dropout (on the weights; > 0
        leaves SDPA's fused CPU kernel) and activation_dropout (inside the feed-forward) cost CPU time.

        tie_embeddings: decoder = target input/output share weights; all = source too (joint vocabulary).

        max_len bounds learned positions (and is `max_src_len`); decode_cache=False re-runs the prefix.
        """
        super().__init__()
        self._record_config(locals())
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if tie_embeddings not in TIES:
            raise ValueError(f"tie_embeddings must be one of {list(TIES)}, got {tie_embeddings!r}")
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be 'sinusoidal' or 'learned', got {positions!r}")
        if tie_embeddings == "all" and src_vocab_size != tgt_vocab_size:
            raise ValueError(f"tie_embeddings='all' needs a joint vocabulary, but src_vocab_size={src_vocab_size} "
                             f"!= tgt_vocab_size={tgt_vocab_size}; use 'decoder' or a joint tokenizer")
        self.pad_id, self.d_model, self.decode_cache = pad_id, d_model, decode_cache
        self.max_src_len = max_len
        self.positions = positions
        self.tgt_emb = nn.Embedding(tgt_vocab_size, d_model)
        self.src_emb = self.tgt_emb if tie_embeddings == "all" else nn.Embedding(src_vocab_size, d_model)
        if positions == "learned":
            self.pos_emb = nn.Embedding(max_len, d_model)
        else:
            self.register_buffer("pos_table", sinusoids(max_len, d_model), persistent=False)
        layer_args = (d_model, num_heads, ff_size, dropout, attention_dropout, activation_dropout, activation)
        self.encoder_layers = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(num_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(num_decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, tgt_vocab_size, bias=False)
        self.dropout = Dropout(dropout)
        self._init_weights()
        if tie_embeddings != "none":
            self.out.weight = self.tgt_emb.weight

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for emb in (self.src_emb, self.tgt_emb):
            nn.init.normal_(emb.weight, 0.0, self.d_model ** -0.5)
        if self.positions == "learned":
            nn.init.normal_(self.pos_emb.weight, 0.0, 0.02)

    @property
    def has_attention(self) -> bool:
        return True

    @classmethod
    def attention_note(cls, config: dict) -> str:
        return "The heatmap shows the last decoder layer's cross-attention, averaged over heads."

    def _embed(self, emb: nn.Embedding, tokens: Tensor, start: int = 0) -> Tensor:
        """tokens (B, T) at positions start.. -> scaled embeddings + positions (B, T, D)."""
        T = tokens.size(1)
        if self.positions == "learned":
            if start + T > self.max_src_len:
                raise ValueError(f"sequence of length {start + T} exceeds max_len={self.max_src_len} "
                                 "of this Transformer's learned positions")
            pos = self.pos_emb.weight[start:start + T]  # (T, D)
        elif start + T <= self.pos_table.size(0):
            pos = self.pos_table[start:start + T]  # (T, D)
        else:
            pos = sinusoids(start + T, self.d_model).to(self.pos_table.device)[start:]  # (T, D)
        return self.dropout(emb(tokens) * math.sqrt(self.d_model) + pos)  # (B, T, D)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        """src, src_mask (B, S) -> memory (B, S, D)."""
        x = self._embed(self.src_emb, src)  # (B, S, D)
        mask = attend_mask(src_mask)  # (B, 1, 1, S)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def _decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, need_attention: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """Whole prefix at once: tgt_in (B, T) -> features (B, T, D), last layer's cross weights (B, T, S)."""
        x = self._embed(self.tgt_emb, tgt_in)  # (B, T, D)
        mask = attend_mask(src_mask)  # (B, 1, 1, S)
        weights = None
        for i, layer in enumerate(self.decoder_layers):
            last = i == len(self.decoder_layers) - 1
            cross_kv = layer.cross_attn.project_memory(memory)
            x, _, w = layer(x, cross_kv, mask, need_weights=need_attention and last)
            weights = w if w is not None else weights
        return self.decoder_norm(x), weights  # (B, T, D)

    def init_state(self, memory: Tensor, src_mask: Tensor, need_attention: bool = False) -> TransformerState:
        """Project the memory to every layer's cross-attention keys/values once; empty self caches."""
        if not self.decode_cache:
            prefix = src_mask.new_zeros(src_mask.size(0), 0, dtype=torch.long)  # (B, 0)
            return TransformerState(memory=memory, src_mask=src_mask, need_attention=need_attention, prefix=prefix)
        cross_kv = [layer.cross_attn.project_memory(memory) for layer in self.decoder_layers]
        k = cross_kv[0][0]
        empty = k.new_zeros(k.size(0), k.size(1), 0, k.size(3))  # (B, H, 0, Dh)
        self_kv = [(empty, empty) for _ in self.decoder_layers]
        return TransformerState(memory=memory, src_mask=src_mask, need_attention=need_attention,
                                cross_kv=cross_kv, self_kv=self_kv)

    def decode_step(self, tokens: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """tokens (B,) -> logits (B, V); the cache grows by one position per layer."""
        if state.prefix is not None:
            prefix = torch.cat([state.prefix, tokens.unsqueeze(1)], 1)  # (B, t+1)
            # The uncached path (for speed comparisons) simply repeats the source: (B, S, D), (B, S).
            memory, src_mask = state.per_row(state.memory), state.per_row(state.src_mask)
            features, weights = self._decode(prefix, memory, src_mask, state.need_attention)
            attention = None if weights is None else weights[:, -1]  # (B, S)
            logits = self.out(features[:, -1])  # (B, V)
            return logits, dataclasses.replace(state, prefix=prefix, attention=attention, step=state.step + 1)
        x = self._embed(self.tgt_emb, tokens.unsqueeze(1), state.step)  # (B, 1, D)
        mask = attend_mask(state.src_mask)  # (B, 1, 1, S)
        self_kv, weights = [], None
        for i, layer in enumerate(self.decoder_layers):
            last = i == len(self.decoder_layers) - 1
            x, kv, w = layer(x, state.cross_kv[i], mask, cache=state.self_kv[i],
                             need_weights=state.need_attention and last, group=state.rows_per_source)
            self_kv.append(kv)
            weights = w if w is not None else weights
        logits = self.out(self.decoder_norm(x)).squeeze(1)  # (B, V)
        attention = None if weights is None else weights[:, -1]  # (B, S)
        return logits, dataclasses.replace(state, self_kv=self_kv, attention=attention, step=state.step + 1)

    def features(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: src, src_mask (B, S), tgt_in (B, T) -> features (B, T, D); logits = self.out(features)."""
        return self._decode(tgt_in, self.encode(src, src_mask), src_mask)[0]
