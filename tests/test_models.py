"""Behaviour every model family must keep: shapes, step-by-step == teacher forcing, padding
invariance, state selection, attention weights, config round-trip, bf16, and learning to copy/reverse."""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from translator.models import AttentionSeq2Seq, LSTMSeq2Seq, Seq2Seq, Transformer

PAD, BOS, EOS = 0, 2, 3
V = 12

TINY = {
    "lstm": lambda: LSTMSeq2Seq(V, V, emb_size=8, hidden_size=16, num_layers=2),
    "gru": lambda: LSTMSeq2Seq(V, V, cell="gru", emb_size=8, hidden_size=16, num_layers=2, reverse_source=False),
    "rnn": lambda: LSTMSeq2Seq(V, V, cell="rnn", emb_size=8, hidden_size=16, num_layers=2),
    "attention-bahdanau": lambda: AttentionSeq2Seq(V, V, emb_size=8, enc_hidden_size=8, dec_hidden_size=16,
                                                   dec_layers=2, attention_size=8),
    "attention-dot": lambda: AttentionSeq2Seq(V, V, attention="dot", emb_size=8, enc_hidden_size=8,
                                              dec_hidden_size=16, enc_layers=2),
    "attention-general-gru": lambda: AttentionSeq2Seq(V, V, cell="gru", attention="general", emb_size=8,
                                                      enc_hidden_size=8, dec_hidden_size=12),
    "attention-luong-rnn": lambda: AttentionSeq2Seq(V, V, cell="rnn", attention="general", emb_size=8,
                                                    enc_hidden_size=8, dec_hidden_size=12, dec_layers=2),
    "transformer": lambda: Transformer(V, V, d_model=16, num_heads=2, num_encoder_layers=2,
                                       num_decoder_layers=2, ff_size=32),
    "transformer-learned-untied": lambda: Transformer(V, V, d_model=16, num_heads=4, num_encoder_layers=1,
                                                      num_decoder_layers=2, ff_size=32, positions="learned",
                                                      tie_embeddings="none", activation="gelu"),
    "transformer-tied-all-uncached": lambda: Transformer(V, V, d_model=16, num_heads=2, num_encoder_layers=1,
                                                         num_decoder_layers=2, ff_size=32, tie_embeddings="all",
                                                         decode_cache=False),
}
ATTENTIVE = [name for name in TINY if not name.startswith(("lstm", "gru", "rnn"))]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster (and deterministically) on one thread, above all on shared, busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(name: str) -> Seq2Seq:
    torch.manual_seed(0)
    return TINY[name]().eval()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids >= 4 with right padding: ids (B, max(lengths)), mask (B, max(lengths))."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (len(lengths), max(lengths)), generator=g)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~mask, PAD), mask


def sample_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src, src_mask = padded_batch([5, 3, 7, 1], seed=1)
    tgt_in, _ = padded_batch([6, 2, 4, 5], seed=2)
    return src, src_mask, tgt_in


def step_through(model: Seq2Seq, src, src_mask, tgt_in, need_attention: bool = False):
    """Feed tgt_in one position at a time -> logits (B, T, V) and per-step attention weights."""
    state = model.init_state(model.encode(src, src_mask), src_mask, need_attention=need_attention)
    logits, attention = [], []
    for t in range(tgt_in.size(1)):
        step_logits, state = model.decode_step(tgt_in[:, t], state)
        logits.append(step_logits)
        attention.append(state.attention)
    return torch.stack(logits, 1), attention


@pytest.mark.parametrize("name", TINY)
def test_shapes(name):
    model = make(name)
    src, src_mask, tgt_in = sample_batch()
    assert model(src, src_mask, tgt_in).shape == (4, tgt_in.size(1), V)
    state = model.init_state(model.encode(src, src_mask), src_mask)
    logits, state = model.decode_step(tgt_in[:, 0], state)
    assert logits.shape == (4, V)
    assert model.has_attention == (name in ATTENTIVE)


@pytest.mark.parametrize("name", TINY)
def test_step_by_step_equals_teacher_forcing(name):
    model = make(name)
    src, src_mask, tgt_in = sample_batch()
    with torch.no_grad():
        expected = model(src, src_mask, tgt_in)
        stepped, _ = step_through(model, src, src_mask, tgt_in)
    torch.testing.assert_close(stepped, expected, atol=1e-5, rtol=1e-5)


def test_transformer_cached_equals_uncached():
    cached = make("transformer")
    uncached = make("transformer")
    uncached.decode_cache = False
    src, src_mask, tgt_in = sample_batch()
    with torch.no_grad():
        a, attention_a = step_through(cached, src, src_mask, tgt_in, need_attention=True)
        b, attention_b = step_through(uncached, src, src_mask, tgt_in, need_attention=True)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(attention_a), torch.stack(attention_b), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_padding_never_changes_other_positions(name):
    model = make(name)
    src, src_mask, tgt_in = sample_batch()  # row 0: source 5, target 6 tokens; neighbours longer on both sides
    with torch.no_grad():
        batched = model(src, src_mask, tgt_in)[0, :6]
        alone = model(src[:1, :5], src_mask[:1, :5], tgt_in[:1, :6])[0]
        stepped, _ = step_through(model, src, src_mask, tgt_in)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stepped[0, :6], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_select_commutes_with_step(name):
    model = make(name)
    src, src_mask, tgt_in = sample_batch()
    index = torch.tensor([2, 0, 0, 3, 1])
    with torch.no_grad():
        state = model.init_state(model.encode(src, src_mask), src_mask, need_attention=model.has_attention)
        _, state = model.decode_step(tgt_in[:, 0], state)
        logits_a, state_a = model.decode_step(tgt_in[:, 1], state)
        logits_b, state_b = model.decode_step(tgt_in[index, 1], state.select(index))
        torch.testing.assert_close(logits_b, logits_a[index], atol=1e-6, rtol=1e-6)
        if model.has_attention:
            torch.testing.assert_close(state_b.attention, state_a.attention[index])
        # and the selected state keeps going like the original rows
        next_a, _ = model.decode_step(tgt_in[:, 2], state_a)
        next_b, _ = model.decode_step(tgt_in[index, 2], state_b)
        torch.testing.assert_close(next_b, next_a[index], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", TINY)
def test_select_within_one_source_keeps_source_fields(name):
    """Beam reordering (rows move among the rows of their own sentence) leaves the source fields
    as they are, in either form, and decodes exactly like K real copies reordered the same way."""
    model = make(name)
    src, src_mask, tgt_in = sample_batch()
    B, K = src.size(0), 3
    repeat = torch.arange(B).repeat_interleave(K)  # (B*K,) K copies of each sentence
    index = repeat * K + torch.tensor([2, 0, 0] * B)  # (B*K,) reorder within each group
    with torch.no_grad():
        state = model.init_state(model.encode(src, src_mask), src_mask)
        grouped, copied = state.expand(K), state.select(repeat)
        _, grouped = model.decode_step(tgt_in[repeat, 0], grouped)
        _, copied = model.decode_step(tgt_in[repeat, 0], copied)
        moved = grouped.select(index)
        assert moved.group == K
        for field in state.source_fields:
            assert getattr(moved, field) is getattr(grouped, field)  # not copied
        tokens = tgt_in[repeat, 1][index]
        torch.testing.assert_close(model.decode_step(tokens, moved)[0], model.decode_step(tokens, copied.select(index))[0],
                                   atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ATTENTIVE)
def test_attention_weights_cover_real_source_only(name):
    model = make(name)
    src, src_mask, tgt_in = sample_batch()
    with torch.no_grad():
        plain, _ = step_through(model, src, src_mask, tgt_in)
        logits, attention = step_through(model, src, src_mask, tgt_in, need_attention=True)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)  # asking for weights changes nothing
    for weights in attention:
        assert weights.shape == src.shape
        torch.testing.assert_close(weights.sum(-1), torch.ones(4))
        assert (weights[~src_mask] == 0).all()


def test_lstm_has_no_attention():
    model = make("lstm")
    src, src_mask, tgt_in = sample_batch()
    _, attention = step_through(model, src, src_mask, tgt_in, need_attention=True)
    assert all(weights is None for weights in attention)


@pytest.mark.parametrize("name", ["rnn", "attention-luong-rnn"])
def test_rnn_cell_is_a_plain_tanh_recurrence_without_cell_state(name):
    """cell: rnn is nn.RNN / nn.RNNCell (tanh), and its decoder state carries h only."""
    model = make(name)
    rnns = [m for m in model.modules() if isinstance(m, (torch.nn.RNN, torch.nn.RNNCell))]
    assert rnns and all(m.nonlinearity == "tanh" for m in rnns)
    assert not any(isinstance(m, (torch.nn.LSTM, torch.nn.GRU, torch.nn.LSTMCell, torch.nn.GRUCell))
                   for m in model.modules())
    src, src_mask, _ = sample_batch()
    state = model.init_state(model.encode(src, src_mask), src_mask)
    _, state = model.decode_step(torch.full((src.size(0),), BOS), state)
    assert state.c is None and state.h.shape[0] == src.size(0)


@pytest.mark.parametrize("name", TINY)
def test_config_round_trip(name):
    model = make(name)
    config = model.config()
    module, _, cls = config["class_path"].rpartition(".")
    rebuilt = getattr(importlib.import_module(module), cls)(**config["init_args"])
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    src, src_mask, tgt_in = sample_batch()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(src, src_mask, tgt_in), model(src, src_mask, tgt_in), atol=0, rtol=0)
    assert config["init_args"]["src_vocab_size"] == V


@pytest.mark.parametrize("name", TINY)
def test_bf16_autocast_forward_is_finite(name):
    from translator.cpu_fastpaths import cpu_bf16_is_fast

    if name == "lstm" and not cpu_bf16_is_fast():
        pytest.skip("oneDNN has no bf16 LSTM on CPUs without native bf16 (AVX2 only); fit trains them in fp32")
    model = make(name).train()
    src, src_mask, tgt_in = sample_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, src_mask, tgt_in)
    logits.float().logsumexp(-1).mean().backward()
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        stepped, _ = step_through(model, src, src_mask, tgt_in, need_attention=model.has_attention)
    assert torch.isfinite(logits).all() and torch.isfinite(stepped).all()


def test_invalid_options_raise_clear_errors():
    with pytest.raises(ValueError, match="joint vocabulary"):
        Transformer(10, 12, tie_embeddings="all")
    with pytest.raises(ValueError, match="divisible"):
        Transformer(10, 10, d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="dot attention"):
        AttentionSeq2Seq(10, 10, attention="dot", enc_hidden_size=8, dec_hidden_size=32)
    with pytest.raises(ValueError, match="cell"):
        LSTMSeq2Seq(10, 10, cell="elman")
    with pytest.raises(ValueError, match="cell"):
        AttentionSeq2Seq(10, 10, cell="elman")
    model = Transformer(V, V, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, ff_size=16,
                        positions="learned", max_len=8)
    with pytest.raises(ValueError, match="max_len=8"):
        model(*padded_batch([9]), torch.full((1, 3), BOS))


# --- learning: one tiny model per family learns copy AND reverse, chosen by a marker token ------------------

COPY, REVERSE = 4, 5  # first source token says which task; symbols are 6..V-1


def task_batch(B: int, g: torch.Generator, max_len: int):
    """src = [task] + symbols (lengths 3..max_len), tgt = symbols copied or reversed."""
    lengths = torch.randint(3, max_len + 1, (B,), generator=g)
    reverse = torch.rand(B, generator=g) < 0.5
    S = int(lengths.max()) + 1
    src = torch.randint(6, V, (B, S), generator=g)
    src[:, 0] = torch.where(reverse, REVERSE, COPY)
    src_mask = torch.arange(S)[None] <= lengths[:, None]  # (B, S)
    src = src.masked_fill(~src_mask, PAD)
    targets = [src[i, 1:n + 1].flip(0) if r else src[i, 1:n + 1] for i, (n, r) in enumerate(zip(lengths, reverse))]
    tgt_in = torch.full((B, S), PAD)
    tgt_out = torch.full((B, S), PAD)
    for i, y in enumerate(targets):
        tgt_in[i, 0] = BOS
        tgt_in[i, 1:len(y) + 1] = y
        tgt_out[i, :len(y)] = y
        tgt_out[i, len(y)] = EOS
    return src, src_mask, tgt_in, tgt_out, [y.tolist() for y in targets], reverse


def greedy(model: Seq2Seq, src, src_mask, max_len: int) -> list[list[int]]:
    """Argmax decoding through the interface only; stops each row at eos."""
    state = model.init_state(model.encode(src, src_mask), src_mask)
    tokens = torch.full((src.size(0),), BOS)
    steps = []
    for _ in range(max_len):
        logits, state = model.decode_step(tokens, state)
        tokens = logits.argmax(-1)
        steps.append(tokens)
    rows = torch.stack(steps, 1).tolist()
    return [row[:row.index(EOS)] if EOS in row else row for row in rows]


LEARNERS = {
    # (model, steps, peak lr, warmup steps, longest sequence)
    "lstm": (lambda: LSTMSeq2Seq(V, V, emb_size=32, hidden_size=128, num_layers=1, dropout=0.0), 250, 1e-2, 0, 5),
    "attention": (lambda: AttentionSeq2Seq(V, V, emb_size=32, enc_hidden_size=32, dec_hidden_size=64,
                                           attention_size=32, dropout=0.0), 200, 1e-2, 0, 7),
    "transformer": (lambda: Transformer(V, V, d_model=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                                        ff_size=128, dropout=0.0), 300, 3e-3, 30, 7),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNERS)
def test_learns_to_copy_and_reverse(name):
    build, steps, lr, warmup, max_len = LEARNERS[name]
    torch.manual_seed(0)
    model = build()
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    # warm up, hold, then decay linearly to 0 over the second half: a stable end point in few steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup if warmup else 1.0, (steps - s) / (0.5 * steps)))
    model.train()
    for _ in range(steps):
        src, src_mask, tgt_in, tgt_out, _, _ = task_batch(64, g, max_len)
        loss = F.cross_entropy(model(src, src_mask, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    src, src_mask, _, _, targets, reverse = task_batch(300, torch.Generator().manual_seed(1), max_len)
    with torch.no_grad():
        predictions = greedy(model, src, src_mask, max_len + 2)
    correct = torch.tensor([p == y for p, y in zip(predictions, targets)])
    assert correct[~reverse].float().mean() >= 0.95, "copy"
    assert correct[reverse].float().mean() >= 0.95, "reverse"


@pytest.mark.parametrize("name", TINY)
def test_expanded_state_decodes_like_repeated_rows(name):
    """expand(K) (beam search: K rows per source, the source fields not copied) decodes exactly like
    K real copies of each row, before and after selects that keep or break the groups."""
    model = make(name)
    src, src_mask, tgt_in = sample_batch()
    B, K = src.size(0), 3
    repeat = torch.arange(B).repeat_interleave(K)  # (B*K,)
    with torch.no_grad():
        state = model.init_state(model.encode(src, src_mask), src_mask, need_attention=model.has_attention)
        grouped, copied = state.expand(K), state.select(repeat)
        assert grouped.group == K and copied.group == 1
        if state.share_source:
            for field in state.source_fields:
                assert getattr(grouped, field) is getattr(state, field)  # shared, not repeated
        logits_g, grouped = model.decode_step(tgt_in[repeat, 0], grouped)
        logits_c, copied = model.decode_step(tgt_in[repeat, 0], copied)
        torch.testing.assert_close(logits_g, logits_c, atol=1e-5, rtol=1e-5)
        if model.has_attention:
            torch.testing.assert_close(grouped.attention, copied.attention, atol=1e-6, rtol=1e-6)
        # drop sentence 1 and reorder beams within the others: whole groups, so the grouping stays
        keep = torch.tensor([0 * K + 2, 0 * K + 2, 0 * K + 1] + [s * K + j for s in range(2, B) for j in (1, 0, 0)])
        kept_g, kept_c = grouped.select(keep), copied.select(keep)
        assert kept_g.group == K and kept_g.src_mask.size(0) == (B - 1) * (1 if state.share_source else K)
        # rows of different sentences mixed in one group of K: falls back to one source row per row
        mixed = torch.tensor([0, K, 2 * K, 1, K + 1, 2 * K + 1])
        mixed_g, mixed_c = grouped.select(mixed), copied.select(mixed)
        assert mixed_g.group == 1 and mixed_g.src_mask.size(0) == mixed.numel()
        for (sg, sc), idx in (((kept_g, kept_c), keep), ((mixed_g, mixed_c), mixed)):
            tokens = tgt_in[repeat, 1][idx]
            torch.testing.assert_close(model.decode_step(tokens, sg)[0], model.decode_step(tokens, sc)[0],
                                       atol=1e-5, rtol=1e-5)
