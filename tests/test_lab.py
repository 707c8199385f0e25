"""`translator lab`: every view through the real CLI on tiny models and tiny corpora built here,
writing a PNG and its JSON; parameter counts equal the formulas and the lectures' exercise; the
numbers each view computes hold what the view claims (gates = PyTorch's, attention = the state's)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import make_tiny_checkpoint, write_multi30k_like
from translator.cli import main
from translator.lab import params
from translator.models import AttentionSeq2Seq, LSTMSeq2Seq, Transformer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    return {kind: make_tiny_checkpoint(root / f"{kind}.ckpt", kind=kind, steps=20)
            for kind in ("transformer", "attention", "lstm")}


def run(tmp_path: Path, *args: str) -> dict:
    """Run `translator lab ...` with --output tmp/out.png; the PNG must exist, the JSON is returned."""
    out = tmp_path / "out.png"
    main(["lab", *args, "--output", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))


def test_lecture_exercise_numbers():
    rows = {r["component"]: r for r in params.exercise(100, 128, 10000)}
    assert rows["W_x"]["actual"] == rows["W_x"]["formula_value"] == 12_800
    assert rows["W_h"]["actual"] == rows["W_h"]["formula_value"] == 16_384
    assert rows["b_h"]["actual"] == 128
    assert rows["W_y"]["actual"] == 128 * 10000 and rows["b_y"]["actual"] == 10000


@pytest.mark.parametrize("model", [
    LSTMSeq2Seq(50, 60, cell="lstm", emb_size=8, hidden_size=16, num_layers=2),
    LSTMSeq2Seq(50, 60, cell="rnn", emb_size=8, hidden_size=16, num_layers=1),
    AttentionSeq2Seq(50, 60, cell="gru", emb_size=8, enc_hidden_size=8, dec_hidden_size=16, enc_layers=2),
    Transformer(50, 50, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=2, ff_size=32,
                tie_embeddings="all"),
], ids=["lstm", "rnn", "attention-gru", "transformer-tied"])
def test_parameter_counts_equal_formulas(model):
    rows = params.components(model)
    assert all(r["formula_value"] == r["actual"] for r in rows if not r["tied"])
    assert sum(r["actual"] for r in rows) == sum(p.numel() for p in model.parameters())


def test_recurrent_formulas_by_hand():
    """g·(E·H + H·H + 2H) per layer, written out independently of params.py."""
    E, H = 7, 5
    for cell, g in (("RNN", 1), ("GRU", 3), ("LSTM", 4)):
        module = getattr(nn, cell)(E, H, num_layers=2, bidirectional=True)
        expected = 2 * g * (E * H + H * H + 2 * H) + 2 * g * (2 * H * H + H * H + 2 * H)
        assert params.formula(module)[1] == expected == sum(p.numel() for p in module.parameters())


def test_params_and_positions_commands(tmp_path):
    data = run(tmp_path, "params", "--source", str(ROOT / "translator/configs/rnn.yaml"))
    assert data["model"]["total"] == data["model"]["total_pytorch"]
    assert {r["component"] for r in data["exercise"]["rows"]} >= {"W_x", "W_h", "W_y"}
    data = run(tmp_path, "positions", "--length", "16", "--d_model", "32")
    assert data["shift_invariant"] and len(data["table"]) == 16


def test_softmax_beam_attention_gates_commands(ckpts, tmp_path):
    data = run(tmp_path, "softmax", str(ckpts["transformer"]), "--text", "a man runs", "--prefix", "a",
               "--top_k", "3", "--top_p", "0.5")
    assert data["kept"]["top_k"] == 3 and len(data["rows"]) == 20
    assert abs(sum(r["p_top_k"] for r in data["rows"]) - 1.0) < 1e-4  # all of top-k's mass is in the top 20
    data = run(tmp_path, "beam", str(ckpts["attention"]), "--text", "the dog runs", "--beam_size", "3")
    assert data["final"] and max(r["rank"] or 0 for r in data["rows"]) <= 3
    data = run(tmp_path, "attention", str(ckpts["transformer"]), "--text", "two kids play")
    assert data["max_abs_diff_vs_decoder_state"] < 1e-5
    assert set(data["layers"]) == {"encoder self", "decoder self", "cross"}
    data = run(tmp_path, "attention", str(ckpts["attention"]), "--text", "two kids play")
    assert len(data["alignment"]) == len(data["tgt_pieces"])
    data = run(tmp_path, "gates", str(ckpts["lstm"]), "--text", "a red ball on street")
    assert data["max_abs_diff_vs_pytorch"] < 1e-5 and set(data["mean"]) == {"input", "forget", "output"}


def test_gates_of_bidirectional_multilayer_gru_match_pytorch():
    from translator.lab import gates

    torch.manual_seed(0)
    model = AttentionSeq2Seq(30, 30, cell="gru", emb_size=6, enc_hidden_size=5, dec_hidden_size=8, enc_layers=2).eval()

    class Tok:  # the two things gates.compute asks of a tokenizer
        src = type("SP", (), {"id_to_piece": staticmethod(lambda i: f"p{i}")})()

        @staticmethod
        def encode_src(texts):
            return [[int(w) for w in t.split()] for t in texts]

    data = gates.compute(model, Tok, "4 9 12 7 3")
    assert data["max_abs_diff_vs_pytorch"] < 1e-5 and set(data["mean"]) == {"reset", "update"}


def test_lab_errors_are_one_line(ckpts, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "gates", str(ckpts["transformer"]), "--text", "a man", "--output", str(tmp_path / "g.png")])
    assert exit_info.value.code == 1
    assert "gates need an LSTM or GRU" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lab", "positions", "--output", str(tmp_path / "p.jpg")])
    assert ".png" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_multi30k_like(tmp_path_factory.mktemp("data"), n_train=120, n_val=12, n_test=12)


def short(tiny_data, tmp_path):
    return ["--data_dir", str(tiny_data), "--vocab_size", "300", "--max_tokens", "200", "--cache_dir",
            str(tmp_path / "cache")]


def test_gradients_command(tiny_data, tmp_path):
    data = run(tmp_path, "gradients", *short(tiny_data, tmp_path), "--steps", "3", "--length", "3",
               "--hidden_size", "8")
    assert set(data["cells"]) == {"rnn", "lstm", "gru"}
    assert all(len(d["trained"]) == 3 and all(g > 0 for g in d["trained"]) for d in data["cells"].values())
    assert len(data["clip"]["before"]) == len(data["clip"]["after"]) == 3
    assert max(data["clip"]["after"]) <= 1.0 + 1e-4  # what the optimizer used is capped at the threshold


def test_exposure_command(tiny_data, tmp_path):
    data = run(tmp_path, "exposure", *short(tiny_data, tmp_path), "--steps", "4", "--every", "2",
               "--sentences", "6")
    assert len(data["runs"]) == 2
    for d in data["runs"].values():
        assert [p["step"] for p in d["points"]] == [2, 4]
    ratios = [p["teacher_forcing"] for p in list(data["runs"].values())[1]["points"]]
    assert ratios[0] > ratios[1] and ratios[1] == pytest.approx(0.7)


def test_bottleneck_command(ckpts, tiny_data, tmp_path):
    data = run(tmp_path, "bottleneck", "--checkpoint", f"a={ckpts['lstm']}", "--checkpoint",
               f"b={ckpts['transformer']}", "--per_length", "4", "--data_dir", str(tiny_data))
    assert data["sentences"] == 12 and set(data["results"]) == {"a", "b"}
    assert sum(r["n"] for r in data["results"]["a"]) == 12


def test_beam_trace_records_the_real_search_without_changing_it(ckpts):
    from translator.artifacts.checkpoint import load_bundle
    from translator.decoding import decode

    bundle = load_bundle(ckpts["transformer"])
    tok = bundle.tokenizer
    src = torch.tensor([tok.encode_src(["a man runs in park"])[0]])
    options = dict(bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, unk_id=tok.unk_id, method="beam",
                   beam_size=3, nbest=3)
    trace: list = []
    traced = decode(bundle.model, src, src != tok.pad_id, trace=trace, **options)
    plain = decode(bundle.model, src, src != tok.pad_id, **options)
    assert [h.tokens for h in traced[0]] == [h.tokens for h in plain[0]]
    ended = {tuple(e["tokens"]): e["score"] for step in trace for e in step["finished"]}
    for h in traced[0]:  # every finished hypothesis was recorded when it ended, with its score
        if h.finished:
            assert ended[tuple(h.tokens)] == pytest.approx(h.score)
    assert all(len(step["beams"][0]) == 3 for step in trace)
