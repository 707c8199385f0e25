"""Ensemble decoding: one model of the four-method interface over several checkpoints."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import make_tiny_checkpoint, tiny_sentences, write_multi30k_like
from translator.cli import main
from translator.decoding import DecodeConfig, decode
from translator.engines.ensemble import Ensemble, load_ensemble, mean_log_probs
from translator.evaluation.command import evaluate
from translator.inference.translator import Translator

CONFIGS = {"greedy": DecodeConfig(method="greedy"), "beam": DecodeConfig(beam_size=4, nbest=2),
           "sample": DecodeConfig(method="sample", nbest=3, temperature=1.2, seed=3)}
TEXTS = tiny_sentences(12, seed=7)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints of every family sharing one tokenizer (same texts), and one with another tokenizer."""
    root = tmp_path_factory.mktemp("ensemble")
    paths = {kind: make_tiny_checkpoint(root / f"{kind}.ckpt", kind, steps=steps) for kind, steps in
             (("transformer", 120), ("attention", 300), ("lstm", 200))}
    paths["transformer2"] = make_tiny_checkpoint(root / "transformer2.ckpt", "transformer", steps=60)
    paths["other_tokenizer"] = make_tiny_checkpoint(root / "other.ckpt", "transformer", steps=5, seed=1)
    return paths


def _outputs(translator: Translator, config: DecodeConfig) -> list[list[tuple[list[int], float]]]:
    tok = translator.tokenizer
    out = []
    for text in TEXTS:
        ids = tok.encode_src([text])[0]
        src = torch.tensor([ids])
        hyps = decode(translator.model, src, src != tok.pad_id, config, bos_id=tok.bos_id, eos_id=tok.eos_id,
                      pad_id=tok.pad_id, unk_id=tok.unk_id, byte_values=translator.engine.byte_values)[0]
        out.append([(h.tokens, h.score) for h in hyps])
    return out


def _tokens(outputs):
    return [[tokens for tokens, _ in sentence] for sentence in outputs]


@pytest.mark.parametrize("kind", ["transformer", "attention", "lstm"])
@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_ensemble_of_one_and_of_two_copies_equal_the_checkpoint(checkpoints, kind, method):
    config = CONFIGS[method]
    single = _outputs(Translator.from_checkpoint(checkpoints[kind]), config)
    one = _outputs(Translator.from_ensemble([checkpoints[kind]]), config)
    two = _outputs(Translator.from_ensemble([checkpoints[kind], checkpoints[kind]]), config)
    assert _tokens(one) == _tokens(single) and _tokens(two) == _tokens(single)
    for a, b in zip(one, single):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    assert any(tokens for sentence in single for tokens, _ in sentence)  # the tiny models do say something


def test_mixed_families_decode_as_the_mean_of_their_log_probs(checkpoints):
    """Greedy search of a Transformer + LSTM + attention ensemble equals an independent greedy loop that
    re-runs every member's teacher-forced forward on the growing prefix and averages log-softmaxes."""
    bundle = load_ensemble([checkpoints["transformer"], checkpoints["lstm"], checkpoints["attention"]])
    members = [b.model for b in bundle.members]
    tok = bundle.tokenizer
    translator = Translator(bundle)
    for text in TEXTS[:6]:
        src = torch.tensor([tok.encode_src([text])[0]])
        mask = src != tok.pad_id
        prefix = [tok.bos_id]
        limit = int(1.5 * src.size(1) + 10)
        with torch.inference_mode():
            for _ in range(limit):
                lp = mean_log_probs([m(src, mask, torch.tensor([prefix]))[0, -1] for m in members])  # (V,)
                lp[[tok.pad_id, tok.bos_id]] = -float("inf")
                prefix.append(int(lp.argmax()))
                if prefix[-1] == tok.eos_id:
                    break
        expected = [t for t in prefix[1:] if t != tok.eos_id]
        got = decode(translator.model, src, mask, DecodeConfig(method="greedy"), bos_id=tok.bos_id,
                     eos_id=tok.eos_id, pad_id=tok.pad_id, unk_id=tok.unk_id)[0][0].tokens
        assert got == expected
    assert "ensemble of 3" in bundle.architecture and not translator.model.has_attention  # the LSTM has none


def test_ensemble_beam_batched_equals_one_by_one_and_returns_attention(checkpoints):
    """Beams of different sentences finish at different steps: every member's state is selected alike."""
    translator = Translator.from_ensemble([checkpoints["transformer"], checkpoints["attention"],
                                           checkpoints["transformer2"]])
    config = DecodeConfig(beam_size=3, nbest=3)
    batched = translator.translate(TEXTS, config, batch_size=len(TEXTS), return_attention=True)
    for text, result in zip(TEXTS, batched):
        alone = translator.translate([text], config, batch_size=1)[0]
        assert [t for t, _ in alone.nbest] == [t for t, _ in result.nbest]
        assert result.attention is not None and result.attention.shape[0] == len(result.tgt_pieces)
        torch.testing.assert_close(result.attention.sum(-1), torch.ones(result.attention.shape[0]), atol=1e-4,
                                   rtol=0)


def test_ensemble_step_by_step_equals_teacher_forcing(checkpoints):
    """The interface's invariant (DESIGN.md) holds for an ensemble of mixed families, and its
    teacher-forced scores are what perplexity and anti-LM re-ranking read."""
    bundle = load_ensemble([checkpoints["transformer"], checkpoints["lstm"], checkpoints["attention"]])
    model, tok = bundle.model, bundle.tokenizer
    ids = tok.encode_src(TEXTS[:4])
    width = max(map(len, ids))
    src = torch.tensor([x + [tok.pad_id] * (width - len(x)) for x in ids])  # (B, S)
    mask = src != tok.pad_id
    tgt_in = torch.cat([torch.full((4, 1), tok.bos_id), src[:, :5].clamp(min=4)], 1)  # (B, T)
    with torch.inference_mode():
        expected = model(src, mask, tgt_in)  # (B, T, V)
        state = model.init_state(model.encode(src, mask), mask)
        for t in range(tgt_in.size(1)):
            logits, state = model.decode_step(tgt_in[:, t], state)
            torch.testing.assert_close(logits, expected[:, t], atol=1e-4, rtol=1e-4)
    assert Ensemble([b.model for b in bundle.members]).max_src_len == bundle.members[0].model.max_src_len
    assert Translator(bundle).perplexity(TEXTS, TEXTS) < float("inf")


def test_mismatched_tokenizers_give_one_message_naming_the_files(checkpoints, capsys, tmp_path):
    a, b = checkpoints["transformer"], checkpoints["other_tokenizer"]
    with pytest.raises(ValueError, match=f"cannot ensemble {b} with {a}: they were trained with different tokenizers"):
        load_ensemble([a, b])
    source = tmp_path / "in.txt"
    source.write_text("a man\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", "--ensemble", str(a), str(b), "--input", str(source)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1 and str(b) in err and "different tokenizers" in err
    with pytest.raises(SystemExit):
        main(["translate", "--checkpoint", str(a), "--ensemble", str(a), "--input", str(source)])
    assert "not both" in capsys.readouterr().err


def test_cli_translate_and_evaluate_with_an_ensemble(checkpoints, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    single, pair = tmp_path / "single.txt", tmp_path / "pair.txt"
    main(["translate", "--checkpoint", str(checkpoints["lstm"]), "--input", str(source), "--output", str(single)])
    main(["translate", "--ensemble", str(checkpoints["lstm"]), str(checkpoints["lstm"]), "--input", str(source),
          "--output", str(pair), "--decode.beam_size", "5"])
    assert pair.read_text() == single.read_text()

    data = write_multi30k_like(tmp_path / "data", n_train=10, n_val=5, n_test=8, transform=str)
    reports = evaluate(checkpoint=[str(checkpoints["transformer"])], dataset="multi30k", data_dir=str(data),
                       ensemble=[str(checkpoints["transformer"]), str(checkpoints["transformer2"])],
                       decode=DecodeConfig(method="greedy"))
    assert [r["label"] for r in reports] == ["transformer", "ensemble(transformer+transformer2)"]
    assert reports[1]["ensemble"] == [str(checkpoints["transformer"]), str(checkpoints["transformer2"])]
    assert "ensemble of 2" in reports[1]["architecture"]
    assert "ensemble(transformer+transformer2)" in capsys.readouterr().out


# ---- the app offers the ensemble of the checkpoints it was given --------------------------------
def test_app_offers_the_ensemble_of_compatible_given_checkpoints(checkpoints):
    from translator.serve.learn import LearnService
    from translator.serve.service import ModelRegistry, TranslatorService, UserError

    given = [checkpoints["transformer"], checkpoints["lstm"], checkpoints["other_tokenizer"]]
    registry = ModelRegistry(given, checkpoints_dir=None)
    [entry] = registry.ensembles  # other_tokenizer cannot join: another tokenizer
    assert entry.members == (checkpoints["transformer"], checkpoints["lstm"])
    assert entry.label in registry.choices and entry.label not in registry.labels
    assert entry.label == "ensemble of 2: Transformer + LSTMSeq2Seq · de→en"
    service = TranslatorService(registry, workers=1)
    text = "\n".join(TEXTS[:4])
    got = service.translate_text(text, entry.label, "beam", 3)
    assert got.error is None and "mean of the members' log-probabilities" in got.info
    want = Translator.from_ensemble(entry.members).translate(TEXTS[:4], DecodeConfig(method="beam", beam_size=3))
    assert got.text.splitlines() == [t.text for t in want]
    import gradio as gr

    from translator.serve.app import build_app

    demo = build_app(registry=registry)
    dropdowns = {b.elem_id: [c[0] if isinstance(c, tuple) else c for c in b.choices]
                 for b in demo.blocks.values() if isinstance(b, gr.Dropdown)}
    assert entry.label in dropdowns["checkpoint"] and entry.label not in dropdowns["learn-checkpoint"]
    # the ensemble shares the members' models already in the app's cache: nothing is loaded twice
    ensemble = registry.translator(entry).model
    assert [m for m in ensemble.members] == [registry.translator(i).model for i in registry.translation[:2]]
    # the Learn tab looks inside one model: an ensemble label is not one of its choices
    with pytest.raises(UserError, match="Unknown checkpoint"):
        LearnService(registry)._model(entry.label)
    # one checkpoint, the same file twice, or incompatible ones: no ensemble is offered
    assert ModelRegistry([checkpoints["transformer"]], checkpoints_dir=None).ensembles == []
    assert ModelRegistry([checkpoints["transformer"]] * 2, checkpoints_dir=None).ensembles == []
    assert ModelRegistry([checkpoints["transformer"], checkpoints["other_tokenizer"]],
                         checkpoints_dir=None).ensembles == []


def test_app_names_the_files_when_two_ensembles_look_alike(checkpoints, tmp_path):
    from translator.serve.service import ModelRegistry

    other2 = make_tiny_checkpoint(tmp_path / "other2.ckpt", "transformer", steps=5, seed=1)  # other's tokenizer
    registry = ModelRegistry([checkpoints["transformer"], checkpoints["transformer2"], checkpoints["other_tokenizer"],
                              other2], checkpoints_dir=None)
    labels = [e.label for e in registry.ensembles]
    assert labels == ["ensemble of 2: Transformer + Transformer (transformer.ckpt, transformer2.ckpt) · de→en",
                      "ensemble of 2: Transformer + Transformer (other.ckpt, other2.ckpt) · de→en"]
    assert registry.resolve(labels[1]).members == (checkpoints["other_tokenizer"], other2)
    # members that share a file name (each run's best.ckpt) are named by their paths
    (tmp_path / "run2").mkdir()
    copy = tmp_path / "run2" / checkpoints["transformer"].name
    copy.write_bytes(checkpoints["transformer2"].read_bytes())
    [entry] = ModelRegistry([checkpoints["transformer"], copy], checkpoints_dir=None).ensembles
    assert f"({checkpoints['transformer']}, {copy})" in entry.describe()
