"""Chat decoding: anti-LM re-ranking, context dropout, whole UTF-8 characters, the rules of DecodeConfig."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor

from translator.data.sampler import TokenBudgetBatchSampler
from translator.decoding import CHAT_DECODING, DecodeConfig, backward_log_probs, decode
from translator.models.base import DecoderState, Seq2Seq
from translator.tokenizer import Tokenizer
from translator.training.datamodule import ContextDropoutBatches, EncodedSplit, empty_context_mask

PAD, UNK, BOS, EOS, EMPTY = 0, 1, 2, 3, 4  # EMPTY: the <sep> token alone = an empty context
GENERIC, SPECIFIC, OTHER = 5, 6, 7
IDS = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, unk_id=UNK)


@dataclasses.dataclass
class TableState(DecoderState):
    empty: Tensor | None = None  # (B,) whether the source is the empty context
    step: int = 0


class ReplyTable(Seq2Seq):
    """A 'model' with fixed next-token tables: one reply token, then eos.

    After a real context: generic 0.5, specific 0.4, other 0.1. After the empty context (the reply
    language model): generic 0.9, specific 0.01. Likelihood picks the generic reply; the anti-LM
    score log p(r|c) - lambda log p(r) picks the specific one.
    """

    def __init__(self, vocab: int = 8):
        super().__init__()
        self.vocab = vocab
        real = torch.full((vocab,), 1e-6)
        real[[GENERIC, SPECIFIC, OTHER]] = torch.tensor([0.5, 0.4, 0.1])
        empty = torch.full((vocab,), 1e-6)
        empty[[GENERIC, SPECIFIC, OTHER]] = torch.tensor([0.9, 0.01, 0.09])
        end = torch.full((vocab,), 1e-6)
        end[EOS] = 1.0
        self.register_buffer("tables", torch.stack([real, empty, end]).log())  # (3, V)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        return (src[:, 0] == EMPTY).float()[:, None, None]  # (B, 1, 1)

    def init_state(self, memory: Tensor, src_mask: Tensor, need_attention: bool = False) -> TableState:
        return TableState(memory=memory, src_mask=src_mask, need_attention=need_attention,
                          empty=memory[:, 0, 0].bool())

    def decode_step(self, tokens: Tensor, state: TableState) -> tuple[Tensor, TableState]:
        first = (tokens == BOS)  # (R,)
        table = torch.where(state.empty, 1, 0)  # (R,)
        rows = torch.where(first, table, 2)  # after the reply token: eos
        return self.tables[rows], dataclasses.replace(state, step=state.step + 1)

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        empty = (src[:, 0] == EMPTY)  # (B,)
        rows = torch.where(tgt_in == BOS, torch.where(empty, 1, 0)[:, None], 2)  # (B, T)
        return self.tables[rows]  # (B, T, V)


def one_context() -> tuple[Tensor, Tensor]:
    src = torch.tensor([[9 % 8, 6, 7]])  # any real context (not the EMPTY token first)
    return src, torch.ones_like(src, dtype=torch.bool)


@pytest.mark.parametrize("method", ["beam", "sample"])
def test_anti_lm_prefers_the_specific_reply_over_the_generic_one(method):
    model, (src, mask) = ReplyTable(), one_context()
    plain = DecodeConfig(method=method, beam_size=3, candidates=3 if method == "beam" else 64, length_penalty=0.0,
                         seed=0)
    best = decode(model, src, mask, plain, **IDS, empty_source=[EMPTY])[0][0]
    assert best.tokens == [GENERIC]  # likelihood: the generic reply
    reranked = decode(model, src, mask, plain.replace(lm_weight=0.5), **IDS, empty_source=[EMPTY])[0]
    assert reranked[0].tokens == [SPECIFIC]
    expected = math.log(0.4) - 0.5 * math.log(0.01)  # log p(r|c) - lambda log p(r), both with eos (p = 1)
    assert reranked[0].normalized == pytest.approx(expected, abs=1e-4)
    assert reranked[0].lm_score == pytest.approx(math.log(0.01), abs=1e-4)


def test_length_bonus_adds_gamma_per_step():
    model, (src, mask) = ReplyTable(), one_context()
    config = DecodeConfig(method="beam", beam_size=3, candidates=3, length_penalty=0.0, length_bonus=0.25)
    hyps = decode(model, src, mask, config, **IDS)[0]
    for h in hyps:
        assert h.normalized == pytest.approx(h.score + 0.25 * (len(h.tokens) + h.finished))


def test_anti_lm_needs_an_empty_context():
    model, (src, mask) = ReplyTable(), one_context()
    with pytest.raises(ValueError, match="empty-context"):
        decode(model, src, mask, DecodeConfig(lm_weight=0.3, beam_size=2), **IDS)


class BackTable(Seq2Seq):
    """A backward 'model' p(context | reply) that reads only the reply's first token: after OTHER every token of
    the context (and eos) has probability 0.24, after SPECIFIC 0.01, after GENERIC 0.125 (uniform)."""

    CONTEXT = (1, 6, 7, EOS)  # one_context()'s tokens, then eos

    def __init__(self, vocab: int = 8):
        super().__init__()
        tables = torch.full((vocab, vocab), 1.0 / vocab)
        for reply, inside in ((OTHER, 0.24), (SPECIFIC, 0.01)):
            outside = (1.0 - inside * len(self.CONTEXT)) / (vocab - len(self.CONTEXT))
            tables[reply] = outside
            tables[reply, list(self.CONTEXT)] = inside
        self.register_buffer("tables", tables.log())  # (V, V): row = the reply's first token

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        return self.tables[src[:, 0]][:, None, :].expand(-1, tgt_in.size(1), -1)  # (B, T, V)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:  # only teacher forcing scores a given context
        raise NotImplementedError

    def init_state(self, memory: Tensor, src_mask: Tensor, need_attention: bool = False) -> DecoderState:
        raise NotImplementedError

    def decode_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        raise NotImplementedError


@pytest.mark.parametrize("method", ["beam", "sample"])
def test_mmi_bidi_score_is_its_formula_and_picks_the_reply_that_explains_the_message(method):
    """log p(r|c) + beta log p(c|r) - lambda log p(r) + gamma |r|, each term from the toy tables by hand."""
    model, (src, mask) = ReplyTable(), one_context()
    config = DecodeConfig(method=method, beam_size=3, candidates=3 if method == "beam" else 64, length_penalty=0.0,
                          lm_weight=1.0, length_bonus=0.5, backward_weight=1.0, seed=0)
    config = config.replace(nbest=config.num_candidates)  # every candidate, to check each score
    ranked = decode(model, src, mask, config, **IDS, empty_source=[EMPTY], backward=BackTable())[0]
    forward, lm = {GENERIC: 0.5, SPECIFIC: 0.4, OTHER: 0.1}, {GENERIC: 0.9, SPECIFIC: 0.01, OTHER: 0.09}
    backward = {GENERIC: 4 * math.log(0.125), SPECIFIC: 4 * math.log(0.01), OTHER: 4 * math.log(0.24)}
    seen = set()
    for h in ranked:
        (r,) = h.tokens
        seen.add(r)
        assert h.backward_score == pytest.approx(backward[r], abs=1e-5)
        expected = math.log(forward[r]) + 1.0 * backward[r] - 1.0 * math.log(lm[r]) + 0.5 * 2
        assert h.normalized == pytest.approx(expected, abs=1e-4)
    assert seen == {GENERIC, SPECIFIC, OTHER}
    assert ranked[0].tokens == [OTHER]  # anti-LM alone picks SPECIFIC (below); the backward model overrules it
    anti_lm = decode(model, src, mask, config.replace(backward_weight=0.0), **IDS, empty_source=[EMPTY],
                     backward=BackTable())[0]
    assert anti_lm[0].tokens == [SPECIFIC]
    assert [h.normalized for h in anti_lm] == [h.normalized for h in decode(
        model, src, mask, config.replace(backward_weight=0.0), **IDS, empty_source=[EMPTY])[0]]  # beta 0 = anti-LM
    with pytest.raises(ValueError, match="--backward CKPT"):
        decode(model, src, mask, config, **IDS, empty_source=[EMPTY])


def test_an_empty_reply_explains_nothing():
    scores = backward_log_probs(BackTable(), [[1, 6, 7], [1, 6, 7]], [[], [OTHER]], bos_id=BOS, eos_id=EOS, pad_id=PAD)
    assert scores[0] == -math.inf and scores[1] == pytest.approx(4 * math.log(0.24), abs=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"lm_weight": -0.1}, "lm_weight"), ({"nbest": 0}, "nbest"), ({"candidates": -1}, "candidates"),
    ({"nbest": 3, "candidates": 2, "method": "sample"}, "fewer than nbest"), ({"temperature": 0.0}, "temperature"),
    ({"top_p": 1.5}, "top_p"), ({"method": "nucleus"}, "greedy, beam, sample"), ({"min_len": -1}, "min_len"),
    ({"length_bonus": float("nan")}, "length_bonus"), ({"beam_size": 2, "nbest": 3}, "beam_size"),
    ({"backward_weight": -1.0}, "backward_weight")])
def test_decode_config_rejects_bad_values_with_one_message(options, message):
    with pytest.raises(ValueError, match=message):
        DecodeConfig(**options)


def test_chat_default_is_valid_and_reranks():
    assert CHAT_DECODING.reranks and CHAT_DECODING.num_candidates > 1 and CHAT_DECODING.min_len >= 1
    assert CHAT_DECODING.replace(method="greedy").num_candidates == 1  # switching method never errors
    assert CHAT_DECODING.replace(method="beam", beam_size=2).num_candidates == 2


# ---- context dropout ----------------------------------------------------------------------------

def test_context_dropout_empties_the_configured_share_reproducibly():
    n, rate = 20_000, 0.1
    a = empty_context_mask(n, rate, seed=1, epoch=0)
    assert sum(a) / n == pytest.approx(rate, abs=0.01)
    assert a == empty_context_mask(n, rate, seed=1, epoch=0)  # same seed and epoch: the same pairs
    assert a != empty_context_mask(n, rate, seed=1, epoch=1)  # a fresh draw every epoch
    assert a != empty_context_mask(n, rate, seed=2, epoch=0)
    assert not any(empty_context_mask(n, 0.0, seed=1, epoch=0))


def test_context_dropout_batches_carry_empty_sources_and_keep_the_order():
    n = 400
    src = [[10 + i % 7] * (1 + i % 5) for i in range(n)]
    tgt = [[20 + i % 3] * (1 + i % 4) for i in range(n)]
    data = EncodedSplit(src, tgt, [f"s{i}" for i in range(n)], [f"t{i}" for i in range(n)], empty_source=[EMPTY])
    sampler = TokenBudgetBatchSampler([len(s) for s in src], [len(t) + 1 for t in tgt], 64, seed=3)
    plain = list(sampler)
    wrapped = ContextDropoutBatches(sampler, 0.25, seed=3)
    batches = list(wrapped)
    assert [[i for i, _ in b] for b in batches] == plain  # the same batches, in the same order
    mask = empty_context_mask(n, 0.25, seed=3, epoch=0)
    for batch in batches:
        for i, empty in batch:
            assert empty == mask[i]
            item = data[(i, empty)]
            assert item["src"] == ([EMPTY] if empty else src[i]) and item["tgt"] == tgt[i]
    wrapped.set_epoch(1)  # what Lightning calls between epochs
    assert sampler.epoch == 1 and [e for b in wrapped for _, e in b] != [e for b in batches for _, e in b]


def test_context_dropout_outside_its_range_is_one_clear_error(tmp_path):
    from translator.training.datamodule import Seq2SeqDataModule

    for rate in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"context_dropout must be in \[0, 1\)"):
            Seq2SeqDataModule("chatbot-ko", data_dir=str(tmp_path), context_dropout=rate)
    with pytest.raises(ValueError, match="applies to chat datasets"):
        Seq2SeqDataModule("multi30k", data_dir=str(tmp_path), context_dropout=0.1)


# ---- whole UTF-8 characters ---------------------------------------------------------------------

class Biased(Seq2Seq):
    """Next-token logits = a fixed bias vector (whatever the input): steers decoders to chosen pieces."""

    def __init__(self, bias: Tensor):
        super().__init__()
        self.register_buffer("bias", bias)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        return src.float()[:, :, None]

    def init_state(self, memory: Tensor, src_mask: Tensor, need_attention: bool = False) -> DecoderState:
        return DecoderState(memory=memory, src_mask=src_mask, need_attention=need_attention)

    def decode_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        return self.bias.expand(tokens.size(0), -1).clone(), state

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        return self.bias.expand(*tgt_in.shape, -1).clone()


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    texts = ["a man runs", "the dog plays", "two kids in the park", "안녕하세요 반가워요"] * 20
    return Tokenizer.train(texts, texts, vocab_size=300)


def byte_id(tok: Tokenizer, value: int) -> int:
    return tok.tgt.piece_to_id(f"<0x{value:02X}>")


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
@pytest.mark.parametrize("favoured", [[0x80], [0xBF, 0xED], [0xC0], [0xF8]])
def test_decoders_never_emit_broken_utf8(tokenizer, method, favoured):
    """Bytes that can never start a character (continuations, C0, F8) are never emitted alone."""
    bias = torch.zeros(tokenizer.tgt_vocab_size)
    for rank, value in enumerate(favoured):
        bias[byte_id(tokenizer, value)] = 20.0 - rank
    model = Biased(bias)
    src = torch.tensor([[5, 6, 7]])
    config = DecodeConfig(method=method, beam_size=3, nbest=3 if method != "greedy" else 1, max_len_a=0, max_len_b=9,
                          seed=0)
    for hyp in decode(model, src, torch.ones_like(src, dtype=torch.bool), config, **IDS,
                      byte_values=tokenizer.tgt_byte_values())[0]:
        text = tokenizer.decode_tgt([hyp.tokens])[0]
        assert "\ufffd" not in text
        text.encode("utf-8")  # valid


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_multibyte_characters_are_completed_or_cut_whole(tokenizer, method):
    """A model that loves the lead byte of '한' (ED 95 9C) writes whole characters; at the length
    limit an incomplete one is dropped, never half-emitted."""
    bias = torch.zeros(tokenizer.tgt_vocab_size)
    bias[byte_id(tokenizer, 0xED)] = 20.0
    bias[byte_id(tokenizer, 0x95)] = 15.0
    bias[byte_id(tokenizer, 0x9C)] = 14.0
    bias[byte_id(tokenizer, 0xBF)] = 16.0  # a continuation byte that ED's second position forbids (> 0x9F)
    model = Biased(bias)
    src = torch.tensor([[5, 6, 7]])
    for steps in (4, 5, 6, 7):  # cut at every position inside the second character
        config = DecodeConfig(method=method, beam_size=2, max_len_a=0, max_len_b=steps, seed=0)
        for hyp in decode(model, src, torch.ones_like(src, dtype=torch.bool), config, **IDS,
                          byte_values=tokenizer.tgt_byte_values())[0]:
            text = tokenizer.decode_tgt([hyp.tokens])[0]
            assert "\ufffd" not in text and len(hyp.tokens) % 3 == 0


def test_byte_rule_off_without_byte_values(tokenizer):
    """Without the vocabulary's byte table the decoders do not know byte pieces (old behaviour)."""
    bias = torch.zeros(tokenizer.tgt_vocab_size)
    bias[byte_id(tokenizer, 0x80)] = 20.0
    src = torch.tensor([[5, 6, 7]])
    hyp = decode(Biased(bias), src, torch.ones_like(src, dtype=torch.bool), DecodeConfig(method="greedy",
                 max_len_a=0, max_len_b=2), **IDS)[0][0]
    assert hyp.tokens == [byte_id(tokenizer, 0x80)] * 2


def test_min_len_bans_eos_at_first(tokenizer):
    bias = torch.zeros(tokenizer.tgt_vocab_size)
    bias[EOS] = 30.0
    src = torch.tensor([[5, 6, 7]])
    mask = torch.ones_like(src, dtype=torch.bool)
    assert decode(Biased(bias), src, mask, DecodeConfig(method="greedy"), **IDS)[0][0].tokens == []
    for method in ("greedy", "beam", "sample"):
        hyp = decode(Biased(bias), src, mask, DecodeConfig(method=method, min_len=2, beam_size=2), **IDS)[0][0]
        assert len(hyp.tokens) == 2 and hyp.finished

