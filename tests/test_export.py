"""CTranslate2 export (translator/artifacts/export.py, translator/engines/ct2.py) and int8 PyTorch decoding.

The exported float32 model must decode exactly like the PyTorch model it came from (greedy, token by
token) for every Transformer variant the export maps: sinusoidal / learned positions, tied / untied
embeddings, joint / separate vocabularies.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import collate_copy, make_tiny_checkpoint, tiny_sentences

from translator.artifacts.checkpoint import BUNDLE_KEY, CheckpointMeta, make_bundle
from translator.inference.command import format_output, translate_file
from translator.inference.translator import Translator
from translator.models.transformer import Transformer
from translator.tokenizer import Tokenizer

ctranslate2 = pytest.importorskip("ctranslate2")  # scripts/setup.sh --dev installs it (the [fast] extra)

from translator import cli  # noqa: E402
from translator.artifacts.export import INSTALL_HINT, export_checkpoint  # noqa: E402

#: (positions, tie_embeddings, joint vocabulary, activation)
VARIANTS = {
    "sinusoidal-tied-joint": ("sinusoidal", "decoder", True, "relu"),
    "learned-untied-separate": ("learned", "none", False, "gelu"),
    "sinusoidal-all-joint": ("sinusoidal", "all", True, "gelu"),
    "learned-tied-separate": ("learned", "decoder", False, "relu"),
}


def train_variant(path: Path, positions: str, tie: str, joint: bool, activation: str, steps: int = 60) -> Path:
    """A tiny Transformer of one export variant, trained a little on a copy task, saved as a checkpoint."""
    torch.manual_seed(0)
    texts = tiny_sentences(300, 0)
    tokenizer = Tokenizer.train(texts, texts, vocab_size=400 if joint else 300, joint=joint)
    model = Transformer(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.pad_id, d_model=32,
                        num_heads=2, num_encoder_layers=2, num_decoder_layers=2, ff_size=64, dropout=0.0,
                        activation=activation, positions=positions, max_len=64, tie_embeddings=tie)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    src_ids, tgt_ids = tokenizer.encode_src(texts), tokenizer.encode_tgt(texts)
    for step in range(steps):
        rows = [(step * 32 + i) % len(texts) for i in range(32)]
        src = collate_copy([src_ids[r] for r in rows], tokenizer)
        tgt = collate_copy([tgt_ids[r] for r in rows], tokenizer)
        logits = model(src["src"], src["src_mask"], tgt["tgt_in"])  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt["tgt_out"].flatten(),
                                                 ignore_index=tokenizer.pad_id)
        optim.zero_grad()
        loss.backward()
        optim.step()
    model.eval()
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": {},
                  BUNDLE_KEY: make_bundle(model.config(), tokenizer,
                                          {"dataset": "multi30k", "src_lang": "de", "tgt_lang": "en"})}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """variant -> (checkpoint, float32 export)."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, args in VARIANTS.items():
        ckpt = train_variant(root / f"{name}.ckpt", *args)
        out[name] = (ckpt, export_checkpoint(ckpt, root / f"{name}-ct2", "float32"))
    return out


SOURCES = tiny_sentences(40, 11) + ["a man " * 40, "dog"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float32_export_decodes_greedy_like_pytorch(exported, variant):
    ckpt, folder = exported[variant]
    reference = Translator.from_checkpoint(ckpt).translate(SOURCES, method="greedy", batch_size=16)
    engine = Translator.from_checkpoint(folder)
    assert "CTranslate2" in engine.bundle.architecture
    results = engine.translate(SOURCES, method="greedy", batch_size=16)
    assert [r.tokens for r in results] == [r.tokens for r in reference]  # token by token, every sentence
    assert [r.text for r in results] == [r.text for r in reference]
    # CTranslate2 renormalises over the tokens left after suppressing pad/bos, which an untrained model still
    # gives some mass to; the PyTorch decoders do not renormalise (a trained model gives them ~0).
    assert [r.score for r in results] == pytest.approx([r.score for r in reference], rel=0.02)
    assert any(len(r.tokens) > 2 for r in results)  # a real output, not a row of empty strings


def test_length_limits_match_pytorch_per_sentence(exported):
    """Each sentence keeps its own step limit (a * n + b, max_len), even when the engine batches them."""
    ckpt, folder = exported["sinusoidal-tied-joint"]
    options = dict(method="greedy", max_len_a=0.5, max_len_b=1, batch_size=64)
    reference = Translator.from_checkpoint(ckpt).translate(SOURCES, **options)
    results = Translator.from_checkpoint(folder).translate(SOURCES, **options)
    assert [r.tokens for r in results] == [r.tokens for r in reference]
    assert {len(r.tokens) for r in results} != {max(len(r.tokens) for r in results)}  # limits differ


def test_beam_nbest_has_the_pytorch_format(exported, tmp_path):
    ckpt, folder = exported["learned-untied-separate"]
    lines = ["a man runs", "", "two kids play in park", "   "]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = {}
    for name, path in (("torch", ckpt), ("ct2", folder)):
        outputs[name] = tmp_path / f"{name}.txt"
        translate_file(path, source, outputs[name], method="beam", beam_size=4, nbest=3)
    torch_lines = outputs["torch"].read_text(encoding="utf-8").split("\n")
    ct2_lines = outputs["ct2"].read_text(encoding="utf-8").split("\n")
    assert len(ct2_lines) == len(torch_lines) == len(lines) + 1
    for a, b in zip(torch_lines, ct2_lines):
        assert len(a.split("\t")) == len(b.split("\t"))  # text<TAB>score pairs, empty lines stay empty
    results = Translator.from_checkpoint(folder).translate(lines, method="beam", beam_size=4, nbest=3)
    for r in (results[0], results[2]):
        assert len(r.nbest) == 3 and [s for _, s in r.nbest] == sorted((s for _, s in r.nbest), reverse=True)
        assert r.nbest[0] == (r.text, r.score)
        assert len(format_output(r, 3).split("\t")) == 6
    assert results[1].text == "" and format_output(results[1], 3) == ""


def test_sampling_and_attention_through_the_engine(exported):
    _, folder = exported["sinusoidal-all-joint"]
    engine = Translator.from_checkpoint(folder)
    a = engine.translate(SOURCES[:5], method="sample", nbest=3, seed=3)
    b = engine.translate(SOURCES[:5], method="sample", nbest=3, seed=3)
    assert [r.nbest for r in a] == [r.nbest for r in b] and all(len(r.nbest) == 3 for r in a)
    r = engine.translate(["a man runs in park"], method="beam", return_attention=True)[0]
    assert r.attention is not None and tuple(r.attention.shape) == (len(r.tgt_pieces), len(r.src_pieces))
    assert torch.allclose(r.attention.sum(-1), torch.ones(len(r.tgt_pieces)), atol=1e-3)


def test_exported_directory_is_a_checkpoint_everywhere(exported, tmp_path, capsys):
    ckpt, folder = exported["sinusoidal-tied-joint"]
    meta = json.loads((folder / "translator_export.json").read_text())
    assert meta["data"]["src_lang"] == "de" and meta["quantization"] == "float32"
    assert len(meta["checkpoint"]["sha256"]) == 64 and (folder / "source.spm").is_file()
    assert CheckpointMeta.from_path(folder).task.name == "translation"
    from translator.serve.service import discover_checkpoints, read_info

    info = read_info(folder)
    assert not info.error and "CTranslate2" in info.label and info.src_lang == "de"
    assert folder in discover_checkpoints(folder.parent)
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_text("\n".join(SOURCES[:10]) + "\n")
    ref.write_text("\n".join(SOURCES[:10]) + "\n")
    from translator.evaluation.command import evaluate

    reports = evaluate([str(ckpt), str(folder)], source=str(src), reference=str(ref), method="greedy")
    assert reports[0]["bleu"] == pytest.approx(reports[1]["bleu"], abs=1e-6)
    assert "CTranslate2" in reports[1]["architecture"]


def test_int8_export_decodes(exported, tmp_path):
    ckpt, _ = exported["sinusoidal-tied-joint"]
    folder = export_checkpoint(ckpt, tmp_path / "int8", "int8")
    results = Translator.from_checkpoint(folder).translate(SOURCES[:10], method="greedy")
    reference = Translator.from_checkpoint(ckpt).translate(SOURCES[:10], method="greedy")
    assert "int8" in Translator.from_checkpoint(folder).bundle.architecture
    assert sum(a.text == b.text for a, b in zip(results, reference)) >= 5  # quantized, still the same model


def test_export_refuses_a_non_empty_output(exported, tmp_path):
    ckpt, _ = exported["sinusoidal-tied-joint"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ValueError, match="--force"):
        export_checkpoint(ckpt, tmp_path / "taken", "float32")
    with pytest.raises(ValueError, match="quantization"):
        export_checkpoint(ckpt, tmp_path / "new", "int4")


def test_rnn_checkpoint_gets_one_clear_message(tmp_path, capsys):
    ckpt = make_tiny_checkpoint(tmp_path / "lstm.ckpt", kind="lstm", steps=2)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(ckpt), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "only Transformer checkpoints export" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_ctranslate2_says_how_to_install(exported, tmp_path, monkeypatch, capsys):
    ckpt, folder = exported["sinusoidal-tied-joint"]
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(ckpt), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    assert INSTALL_HINT in capsys.readouterr().err and "translator[fast]" in INSTALL_HINT
    with pytest.raises(ValueError, match=r"pip install"):
        Translator.from_checkpoint(folder)


@pytest.mark.parametrize("kind", ["transformer", "attention", "lstm"])
def test_int8_pytorch_decoding_runs_for_every_family(tmp_path, kind):
    ckpt = make_tiny_checkpoint(tmp_path / f"{kind}.ckpt", kind=kind, steps=60)
    fp32 = Translator.from_checkpoint(ckpt)
    int8 = Translator.from_checkpoint(ckpt, precision="int8")
    quantized = {type(m).__module__ for m in int8.model.modules()}
    assert any("quantized" in name for name in quantized)
    assert not any("quantized" in type(m).__module__ for m in fp32.model.modules())  # the float model is untouched
    lines = SOURCES[:12] + [""]
    for options in ({"method": "greedy"}, {"method": "beam", "beam_size": 3, "nbest": 2}):
        results = int8.translate(lines, **options)
        assert len(results) == len(lines) and results[-1].text == ""
        reference = fp32.translate(lines, **options)
        assert sum(a.text == b.text for a, b in zip(results, reference)) >= len(lines) // 2
