"""Decoders: beam 1 == greedy, batched == one by one, exhaustive search agrees with beam, constraints hold."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor, nn

from translator.decoding import Hypothesis, beam_search, decode, greedy_decode, sample
from translator.models import AttentionSeq2Seq, LSTMSeq2Seq, Transformer
from translator.models.base import DecoderState, Seq2Seq

PAD, UNK, BOS, EOS = 0, 1, 2, 3
IDS = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, unk_id=UNK)


@dataclasses.dataclass
class ToyState(DecoderState):
    hidden: Tensor | None = None  # (B, H)


class Toy(Seq2Seq):
    """GRU encoder, GRU-cell decoder with Luong dot attention; `logit_bias` steers its outputs."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0, hidden: int = 16,
                 scale: float = 1.0) -> None:
        super().__init__()
        self.src_emb = nn.Embedding(src_vocab_size, hidden, padding_idx=pad_id)
        self.tgt_emb = nn.Embedding(tgt_vocab_size, hidden)
        self.encoder = nn.GRU(hidden, hidden, batch_first=True)
        self.cell = nn.GRUCell(hidden, hidden)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, tgt_vocab_size)
        self.scale = scale
        self.register_buffer("logit_bias", torch.zeros(tgt_vocab_size))
        self.steps = 0

    @property
    def has_attention(self) -> bool:
        return True

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        return self.encoder(self.src_emb(src))[0]  # (B, S, H); right padding never reaches real positions

    def init_state(self, memory: Tensor, src_mask: Tensor, need_attention: bool = False) -> ToyState:
        m = src_mask.unsqueeze(-1).float()  # (B, S, 1)
        hidden = (memory * m).sum(1) / m.sum(1)  # (B, H)
        return ToyState(memory=memory, src_mask=src_mask, need_attention=need_attention, hidden=hidden)

    def decode_step(self, tokens: Tensor, state: ToyState) -> tuple[Tensor, ToyState]:
        self.steps += 1
        memory, src_mask = state.per_row(state.memory), state.per_row(state.src_mask)  # (B, S, H), (B, S)
        h = self.cell(self.tgt_emb(tokens), state.hidden)  # (B, H)
        scores = (memory @ h.unsqueeze(-1)).squeeze(-1).masked_fill(~src_mask, -math.inf)  # (B, S)
        att = scores.softmax(-1)
        ctx = (att.unsqueeze(1) @ memory).squeeze(1)  # (B, H)
        logits = self.out(torch.tanh(self.combine(torch.cat([h, ctx], -1)))) * self.scale + self.logit_bias
        return logits, dataclasses.replace(state, hidden=h, attention=att if state.need_attention else None)


def toy(vocab: int = 20, seed: int = 0, scale: float = 3.0) -> Toy:
    torch.manual_seed(seed)
    return Toy(vocab, vocab, hidden=16, scale=scale).eval()


class Bigram(Seq2Seq):
    """Ignores the source: next-token logits are a fixed table row picked by the previous token."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)  # (V, V) logits of the next token given the previous one

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        return src_mask.float()  # (B, S)

    def init_state(self, memory: Tensor, src_mask: Tensor, need_attention: bool = False) -> DecoderState:
        return DecoderState(memory=memory, src_mask=src_mask, need_attention=need_attention)

    def decode_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        att = state.memory / state.memory.sum(1, keepdim=True) if state.need_attention else None  # (B, S)
        return self.table[tokens], dataclasses.replace(state, attention=att)


def real(family: str, vocab: int = 20, seed: int = 0, **kw) -> Seq2Seq:
    """A tiny model of one real family."""
    cls, config = {
        "lstm": (LSTMSeq2Seq, dict(emb_size=8, hidden_size=16, num_layers=1)),
        "attention": (AttentionSeq2Seq, dict(emb_size=8, enc_hidden_size=8, dec_hidden_size=16, attention_size=8)),
        "transformer": (Transformer, dict(d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=2,
                                          ff_size=32)),
    }[family]
    torch.manual_seed(seed)
    return cls(vocab, vocab, pad_id=PAD, dropout=0.0, **config, **kw).eval()


def make_model(family: str, **kw) -> Seq2Seq:
    return toy(**kw) if family == "toy" else real(family, **kw)


FAMILIES = ["toy", "lstm", "attention", "transformer"]


def batch(n: int = 7, vocab: int = 20, seed: int = 1, min_len: int = 2, max_len: int = 9) -> tuple[Tensor, Tensor]:
    """n random right-padded sources of different lengths, no special ids inside."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(min_len, max_len + 1, (n,), generator=g)
    src = torch.randint(4, vocab, (n, int(lens.max())), generator=g)
    mask = torch.arange(src.size(1))[None, :] < lens[:, None]  # (n, S)
    return src.masked_fill(~mask, PAD), mask


def unpad(src: Tensor, mask: Tensor, rows: list[int]) -> tuple[Tensor, Tensor]:
    """Sub-batch of `rows`, trimmed to its own longest sentence (so padding differs from the full batch)."""
    s, m = src[rows], mask[rows]
    width = int(m.sum(1).max())
    return s[:, :width], m[:, :width]


def key(h: Hypothesis) -> tuple:
    return tuple(h.tokens), h.finished


def assert_same(a: list[list[Hypothesis]], b: list[list[Hypothesis]], atol: float = 1e-4) -> None:
    assert len(a) == len(b)
    for ha, hb in zip(a, b):
        assert [key(h) for h in ha] == [key(h) for h in hb]
        for x, y in zip(ha, hb):
            assert x.score == pytest.approx(y.score, abs=atol)
            assert x.normalized == pytest.approx(y.normalized, abs=atol)
            if x.attention is not None or y.attention is not None:
                torch.testing.assert_close(x.attention, y.attention, atol=atol, rtol=0)


# ---- beam 1 == greedy, batched == one by one, cached == uncached ----------------------------------

def reference_greedy(model: Seq2Seq, src: Tensor, mask: Tensor, steps: int, forbid_unk: bool = False,
                     no_repeat_ngram_size: int = 0) -> tuple[list[int], float, bool]:
    """Plain argmax loop over one sentence, written apart from translator.decoding: (tokens, raw score,
    ended with eos). Never emits pad or bos, nor unk with forbid_unk, nor a token completing an n-gram
    that the output already holds with no_repeat_ngram_size = n."""
    n = no_repeat_ngram_size
    with torch.inference_mode():
        state, token, tokens, score = model.init_state(model.encode(src, mask), mask), BOS, [], 0.0
        for _ in range(steps):
            logits, state = model.decode_step(torch.tensor([token]), state)
            lp = logits[0].float().log_softmax(-1)  # (V,)
            lp[[PAD, BOS] + ([UNK] if forbid_unk else [])] = -math.inf
            if n:
                started = tokens[len(tokens) - n + 1:]  # the n-gram this token would complete
                for i in range(len(tokens) - n + 1):
                    if tokens[i:i + n - 1] == started:
                        lp[tokens[i + n - 1]] = -math.inf
            token = int(lp.argmax())
            score += float(lp[token])
            if token == EOS:
                return tokens, score, True
            tokens.append(token)
    return tokens, score, False


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("opts", [{}, dict(length_penalty=1.0, no_repeat_ngram_size=2, forbid_unk=True)])
def test_beam_one_equals_greedy(family, opts):
    """greedy_decode and beam_search(beam_size=1) of a batch both equal the argmax loop above, sentence by sentence."""
    model = make_model(family)
    src, mask = batch()
    limits = dict(max_len_a=1.5, max_len_b=6)
    greedy = greedy_decode(model, src, mask, **IDS, **limits, **opts)
    beam = beam_search(model, src, mask, **IDS, beam_size=1, **limits, **opts)
    for i, (g, b) in enumerate(zip(greedy, beam)):
        s, m = unpad(src, mask, [i])
        tokens, score, finished = reference_greedy(model, s, m, int(1.5 * int(m.sum()) + 6),
                                                   opts.get("forbid_unk", False), opts.get("no_repeat_ngram_size", 0))
        for hyps in (g, b):
            assert len(hyps) == 1
            assert (hyps[0].tokens, hyps[0].finished) == (tokens, finished)
            assert hyps[0].score == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_greedy_matches_a_plain_argmax_loop(family, alpha):
    model = make_model(family)
    src, mask = batch()
    for i, hyps in enumerate(greedy_decode(model, src, mask, **IDS, max_len_a=1, max_len_b=3, length_penalty=alpha)):
        s, m = unpad(src, mask, [i])
        tokens, score, finished = reference_greedy(model, s, m, int(m.sum()) + 3)
        assert (hyps[0].tokens, hyps[0].finished) == (tokens, finished)
        assert hyps[0].score == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method,opts", [("greedy", {}), ("beam", dict(beam_size=4, nbest=3, length_penalty=0.6))])
def test_batched_equals_one_by_one(family, method, opts):
    model = make_model(family)
    src, mask = batch(n=7)
    order = torch.randperm(7, generator=torch.Generator().manual_seed(3)).tolist()
    run = lambda rows: decode(model, *unpad(src, mask, rows), method=method, **IDS, max_len_b=5,
                              return_attention=True, **opts)
    single = [run([i])[0] for i in order]
    for size in (1, 3, 7):
        out = [h for start in range(0, 7, size) for h in run(order[start:start + size])]
        assert_same(out, single)


@pytest.mark.parametrize("method,opts", [("greedy", {}), ("beam", dict(beam_size=3, nbest=3)),
                                         ("sample", dict(num_samples=3, seed=5))])
def test_transformer_cache_matches_prefix_recompute(method, opts):
    cached, uncached = real("transformer", decode_cache=True), real("transformer", decode_cache=False)
    uncached.load_state_dict(cached.state_dict())
    src, mask = batch(n=4)
    a = decode(cached, src, mask, method=method, **IDS, return_attention=True, **opts)
    b = decode(uncached, src, mask, method=method, **IDS, return_attention=True, **opts)
    assert_same(a, b)


# ---- a sentence's rows: its source stored once (shared) or once per row (copied) ------------------

class Recording(Seq2Seq):
    """Drives `model` through the interface and keeps, per decode_step, (logits, rows, stored source rows)."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model, self.steps = model, []

    def encode(self, src: Tensor, src_mask: Tensor):
        return self.model.encode(src, src_mask)

    def init_state(self, memory, src_mask: Tensor, need_attention: bool = False) -> DecoderState:
        return self.model.init_state(memory, src_mask, need_attention)

    def decode_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        logits, state = self.model.decode_step(tokens, state)
        self.steps.append((logits, state.num_rows, state.src_mask.size(0)))
        return logits, state


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method,opts", [("beam", dict(beam_size=3, nbest=2)), ("sample", dict(num_samples=3, seed=0))])
def test_shared_and_copied_source_give_the_same_logits(family, method, opts, monkeypatch):
    """Both forms of DecoderState.share_source, over a whole search in which sentences end at different
    steps (their rows removed mid-search), see the same logits at every step and give the same outputs."""
    model = make_model(family)
    src, mask = batch(n=5, min_len=1, max_len=9)
    state_class = type(model.init_state(model.encode(src, mask), mask))
    runs = {}
    for shared in (True, False):
        monkeypatch.setattr(state_class, "share_source", shared)
        recording = Recording(model)
        out = decode(recording, src, mask, method=method, **IDS, max_len_a=1, max_len_b=2, return_attention=True,
                     **opts)
        runs[shared] = out, recording.steps
    (out_shared, steps_shared), (out_copied, steps_copied) = runs[True], runs[False]
    assert_same(out_shared, out_copied)
    assert [rows for _, rows, _ in steps_shared] == [rows for _, rows, _ in steps_copied]
    for (a, _, _), (b, _, _) in zip(steps_shared, steps_copied):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert all(rows == stored for _, rows, stored in steps_copied)  # copied: one stored source row per row
    assert any(stored < rows for _, rows, stored in steps_shared)  # shared: one per sentence while groups last
    assert len({rows for _, rows, _ in steps_shared}) >= 3  # rows were removed at two different steps at least


# ---- exhaustive search on a tiny vocabulary ------------------------------------------------------

def enumerate_all(model: Seq2Seq, src: Tensor, mask: Tensor, steps: int, forbid_unk: bool) -> dict[tuple, float]:
    """Exact raw score of every output the decoders can produce in `steps` steps: {(tokens, finished): score}."""
    out: dict[tuple, float] = {}
    content = [4, 5] if forbid_unk else [UNK, 4, 5]  # what a 6-word model may emit besides eos

    def walk(prefix: list[int], token: int, state, score: float) -> None:
        logits, state = model.decode_step(torch.tensor([token]), state)
        lp = logits.float().log_softmax(-1)[0].tolist()
        out[(tuple(prefix), True)] = score + lp[EOS]
        for x in content:
            if len(prefix) + 1 == steps:
                out[(tuple(prefix + [x]), False)] = score + lp[x]
            else:
                walk(prefix + [x], x, state, score + lp[x])

    with torch.inference_mode():
        walk([], BOS, model.init_state(model.encode(src, mask), mask), 0.0)
    return out


def penalty(length: int, alpha: float, normalize: bool) -> float:
    return float(length) if normalize else ((5 + length) / 6) ** alpha


@pytest.mark.parametrize("steps", [3, 4])
@pytest.mark.parametrize("alpha,normalize", [(0.0, False), (0.6, False), (2.0, False), (0.0, True)])
@pytest.mark.parametrize("seed,forbid_unk", [(0, False), (1, False), (2, True)])
def test_wide_beam_finds_the_exact_nbest(steps, alpha, normalize, seed, forbid_unk):
    model = toy(vocab=6, seed=seed, scale=4.0)
    src, mask = batch(n=1, vocab=6, seed=seed)
    exact = enumerate_all(model, src, mask, steps, forbid_unk)
    ranked = sorted(exact, key=lambda k: -exact[k] / penalty(len(k[0]) + k[1], alpha, normalize))
    # A beam as wide as the number of outputs (> candidates of any step) prunes nothing, so its
    # n-best must be the exact n-best, whatever early stopping does, down to the full ranking.
    # With forbid_unk there are fewer outputs than beams: the list must hold exactly those.
    wide = sum(3 ** j for j in range(steps)) + 3 ** steps
    assert wide >= 4 * 3 ** (steps - 1)
    for nbest in (1, 5, wide):
        out = beam_search(model, src, mask, **IDS, beam_size=wide, nbest=nbest, length_penalty=alpha,
                          normalize=normalize, max_len_a=0, max_len_b=steps, forbid_unk=forbid_unk)[0]
        assert [key(h) for h in out] == ranked[:nbest]
        for h in out:
            assert h.score == pytest.approx(exact[key(h)], abs=1e-5)
            assert h.normalized == pytest.approx(h.score / penalty(len(h.tokens) + h.finished, alpha, normalize))
    # Narrow beams may miss the best, but every score they report is the exact one.
    for k in (1, 2, 3):
        for h in beam_search(model, src, mask, **IDS, beam_size=k, nbest=k, length_penalty=alpha,
                             normalize=normalize, max_len_a=0, max_len_b=steps, forbid_unk=forbid_unk)[0]:
            assert h.score == pytest.approx(exact[key(h)], abs=1e-5)


def test_early_stop_when_nothing_live_can_win():
    model = toy(vocab=20)
    model.logit_bias[EOS] = 8.0  # eos is by far the best first token
    src, mask = batch(n=1)
    for alpha in (0.0, 1.0):
        model.steps = 0
        out = beam_search(model, src, mask, **IDS, beam_size=4, nbest=1, length_penalty=alpha, max_len_b=30)[0]
        assert out[0].tokens == [] and out[0].finished
        assert model.steps == 1  # one finished < beam_size, but no live hypothesis can catch up


@pytest.mark.parametrize("alpha,normalize", [(2.0, False), (0.0, True)])
def test_early_stop_bound_respects_the_length_penalty(alpha, normalize):
    # From bos: eos (p=0.6) or 4 (p=0.37); after 4, 4 again almost surely. With a length penalty the
    # long [4]*10 beats the early eos, though its prefix [4] starts behind: stopping at step 1 is wrong.
    table = torch.full((6, 6), -30.0)
    table[BOS, EOS], table[BOS, 4], table[BOS, 5] = math.log(0.6), math.log(0.37), math.log(0.03)
    table[4, 4] = table[5, 4] = 10.0
    model = Bigram(table)
    src, mask = batch(n=1, vocab=6)
    out = beam_search(model, src, mask, **IDS, beam_size=2, nbest=1, length_penalty=alpha, normalize=normalize,
                      max_len_a=0, max_len_b=10)[0]
    assert out[0].tokens == [4] * 10 and not out[0].finished
    raw = beam_search(model, src, mask, **IDS, beam_size=2, nbest=1, length_penalty=0.0, max_len_a=0,
                      max_len_b=10)[0]
    assert raw[0].tokens == [] and raw[0].finished  # without a penalty the early eos wins
    # Width 1 is done once one hypothesis finished (the K-finished rule): it stays greedy.
    one = beam_search(model, src, mask, **IDS, beam_size=1, length_penalty=alpha, normalize=normalize,
                      max_len_a=0, max_len_b=10)[0]
    assert one[0].tokens == [] and one[0].finished


@pytest.mark.parametrize("family", FAMILIES)
def test_nbest_sorted_and_distinct(family):
    model = make_model(family)
    src, mask = batch(n=4)
    for alpha in (0.0, 1.0):
        for hyps in beam_search(model, src, mask, **IDS, beam_size=6, nbest=6, length_penalty=alpha, max_len_b=6):
            assert 1 <= len(hyps) <= 6
            scores = [h.normalized for h in hyps]
            assert scores == sorted(scores, reverse=True)
            assert len({key(h) for h in hyps}) == len(hyps)


# ---- constraints: repeats, unk, eos, length -----------------------------------------------------

ALL_METHODS = [("greedy", {}), ("beam", dict(beam_size=4, nbest=4)), ("sample", dict(num_samples=4, seed=0))]


@pytest.mark.parametrize("method,opts", ALL_METHODS)
def test_no_repeat_ngram(method, opts):
    model = toy()
    model.logit_bias[7] = 6.0  # the model wants to say 7 forever
    src, mask = batch(n=3)
    free = decode(model, src, mask, method=method, **IDS, max_len_b=12, **opts)
    assert any(h.tokens.count(7) > 2 for hyps in free for h in hyps)
    for n in (1, 2, 3):
        for hyps in decode(model, src, mask, method=method, **IDS, max_len_b=12, no_repeat_ngram_size=n, **opts):
            for h in hyps:
                grams = [tuple(h.tokens[i:i + n]) for i in range(len(h.tokens) - n + 1)]
                assert len(grams) == len(set(grams)), (n, h.tokens)


@pytest.mark.parametrize("method,opts", ALL_METHODS)
def test_forbid_unk(method, opts):
    model = toy()
    model.logit_bias[UNK] = 5.0
    src, mask = batch(n=3)
    assert any(UNK in h.tokens for hyps in decode(model, src, mask, method=method, **IDS, **opts) for h in hyps)
    for hyps in decode(model, src, mask, method=method, **IDS, forbid_unk=True, **opts):
        assert all(UNK not in h.tokens and PAD not in h.tokens and BOS not in h.tokens for h in hyps)


@pytest.mark.parametrize("method,opts", ALL_METHODS)
def test_eos_first_gives_empty_hypotheses(method, opts):
    model = toy()
    model.logit_bias[EOS] = 30.0
    src, mask = batch(n=3)
    for hyps in decode(model, src, mask, method=method, **IDS, **opts):
        assert hyps[0].tokens == [] and hyps[0].finished and hyps[0].score > -1e-6
        assert all(h.finished for h in hyps)  # the rest of an n-best list: one token, then eos


@pytest.mark.parametrize("method,opts", ALL_METHODS)
def test_max_length_respected(method, opts):
    model = toy()
    model.logit_bias[EOS] = -30.0  # never ends by itself
    src, mask = batch(n=5)
    lens = mask.sum(1).tolist()
    out = decode(model, src, mask, method=method, **IDS, max_len_a=0.5, max_len_b=2, **opts)
    for n, hyps in zip(lens, out):
        assert all(len(h.tokens) == int(0.5 * n + 2) and not h.finished for h in hyps)
    for hyps in decode(model, src, mask, method=method, **IDS, max_len_a=3, max_len_b=10, max_len=4, **opts):
        assert all(len(h.tokens) == 4 for h in hyps)


# ---- sampling -------------------------------------------------------------------------------------

def test_sampling_seeded_and_top_k_one_is_greedy():
    model = toy(scale=1.0)  # a flat-ish model, so samples really vary
    src, mask = batch(n=4)
    run = lambda **kw: [[h.tokens for h in hyps] for hyps in sample(model, src, mask, **IDS, num_samples=3, **kw)]
    assert run(seed=1) == run(seed=1)
    assert run(seed=1) != run(seed=2)
    greedy = greedy_decode(model, src, mask, **IDS)
    for kw in (dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-4)):
        for g, s in zip(greedy, sample(model, src, mask, **IDS, num_samples=2, seed=0, **kw)):
            assert all(h.tokens == g[0].tokens and h.score == pytest.approx(g[0].score, abs=1e-5) for h in s)


def test_temperature_top_k_top_p_shape_the_distribution():
    model = toy(scale=3.0)
    src, mask = batch(n=1)
    with torch.inference_mode():
        logits, _ = model.decode_step(torch.tensor([BOS]), model.init_state(model.encode(src, mask), mask))
    lp = logits[0].log_softmax(-1)
    lp[[PAD, BOS]] = -math.inf
    ranked = lp.argsort(descending=True).tolist()
    nucleus = ranked[:int((lp.exp()[ranked].cumsum(0) < 0.5).sum()) + 1]  # smallest set with mass >= 0.5

    def first(**kw) -> list[int]:
        out = sample(model, src, mask, **IDS, num_samples=300, seed=0, max_len=1, **kw)[0]
        return [h.tokens[0] if h.tokens else EOS for h in out]

    share_of_best = {t: first(temperature=t).count(ranked[0]) / 300 for t in (0.01, 1.0, 5.0)}
    assert share_of_best[0.01] > 0.95 and share_of_best[0.01] > share_of_best[1.0] > share_of_best[5.0]
    assert set(first(temperature=5.0, top_k=3)) <= set(ranked[:3])
    assert set(first(top_p=0.5)) <= set(nucleus)  # (the nucleus is taken after temperature)


# ---- attention and API -------------------------------------------------------------------------

@pytest.mark.parametrize("method,opts", ALL_METHODS)
def test_attention_rows_sum_to_one_over_real_source(method, opts):
    model = toy()
    src, mask = batch(n=5)
    out = decode(model, src, mask, method=method, **IDS, return_attention=True, **opts)
    for n, hyps in zip(mask.sum(1).tolist(), out):
        for h in hyps:
            assert h.attention.shape == (len(h.tokens), n)
            torch.testing.assert_close(h.attention.sum(1), torch.ones(len(h.tokens)))
    assert all(h.attention is None for hyps in decode(model, src, mask, method=method, **IDS, **opts) for h in hyps)


@pytest.mark.parametrize("family", ["lstm", "attention", "transformer"])
def test_real_attention_shapes(family):
    model = real(family)
    src, mask = batch(n=3)
    out = beam_search(model, src, mask, **IDS, beam_size=3, nbest=2, return_attention=True)
    for n, hyps in zip(mask.sum(1).tolist(), out):
        for h in hyps:
            if model.has_attention:
                assert h.attention.shape == (len(h.tokens), n)
                torch.testing.assert_close(h.attention.sum(1), torch.ones(len(h.tokens)), atol=1e-4, rtol=0)
            else:
                assert h.attention is None


def test_decode_rejects_bad_requests():
    model = toy()
    src, mask = batch(n=2)
    with pytest.raises(ValueError, match="greedy, beam, sample"):
        decode(model, src, mask, method="nucleus", **IDS)
    with pytest.raises(ValueError, match="greedy search gives one hypothesis"):
        decode(model, src, mask, method="greedy", nbest=2, **IDS)
    with pytest.raises(ValueError, match="unknown decoding option"):
        decode(model, src, mask, method="beam", beams=3, **IDS)
    with pytest.raises(ValueError, match="lm_weight"):
        decode(model, src, mask, method="beam", lm_weight=-1.0, **IDS)
    with pytest.raises(ValueError, match="nbest"):
        beam_search(model, src, mask, **IDS, beam_size=2, nbest=3)
    with pytest.raises(ValueError, match="no real tokens"):
        greedy_decode(model, src, torch.zeros_like(mask), **IDS)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, src, mask, **IDS, temperature=0)
