"""Per-sentence confidence: signals from the model, a calibrator fitted on val and stored in the checkpoint,
`translate --scores / --min_confidence`, `evaluate --confidence`; a sentence's confidence ignores its batch."""
from __future__ import annotations

import hashlib
import json
import math
import random

import pytest

from helpers import make_tiny_checkpoint, run_cli, tiny_sentences, write_multi30k_like
from translator.artifacts.checkpoint import load_bundle
from translator.evaluation.metrics import reliability, sentence_chrf, spearman
from translator.inference.command import REVIEW_MARK
from translator.inference.confidence import SIGNALS, Calibrator, token_f1
from translator.inference.translator import Translator

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny copy model (de -> en = the same words) and its calibrated copy, fitted on a val split of 40."""
    tmp = tmp_path_factory.mktemp("confidence")
    data = write_multi30k_like(tmp / "data", n_val=40, transform=str)
    ckpt = make_tiny_checkpoint(tmp / "tiny.ckpt", "transformer", steps=150)
    return tmp, data, ckpt


def _calibrate(capsys, ckpt, data, *args):
    return run_cli(capsys, "calibrate", ckpt, "--data_dir", data, "--chrf_threshold", "70", *args)


def test_calibrate_writes_a_new_checkpoint_that_round_trips(calibrated, capsys):
    tmp, data, ckpt = calibrated
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    code, out, err = _calibrate(capsys, ckpt, data, "--plot", tmp / "reliability.png")
    assert code == 0, err
    assert "Spearman with sentence chrF" in out and (tmp / "reliability.png").stat().st_size > 0
    output = tmp / "tiny.calibrated.ckpt"
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before  # the input is untouched

    bundle = load_bundle(output)
    calibrator = Calibrator.from_dict(bundle.calibrator)
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator
    assert calibrator.features == list(SIGNALS) and calibrator.chrf_threshold == 70.0
    assert calibrator.info["split"] == "val" and calibrator.info["sentences"] == 40
    assert load_bundle(ckpt).calibrator is None
    # the stored calibrator is the one translate uses
    sources = tiny_sentences(5, 9)
    results = Translator(bundle).translate(sources, confidence=True)
    for r in results:
        assert 0.0 <= r.confidence <= 1.0 and r.confidence == pytest.approx(calibrator(r.signals), abs=1e-12)


def test_calibrate_never_overwrites_unless_asked(calibrated, capsys):
    tmp, data, ckpt = calibrated
    code, _, err = _calibrate(capsys, ckpt, data, "--output", ckpt)
    assert code == 1 and "(it is the input checkpoint)" in err and "--overwrite" in err
    (tmp / "taken.ckpt").write_text("keep me")
    code, _, err = _calibrate(capsys, ckpt, data, "--output", tmp / "taken.ckpt")
    assert code == 1 and "exists" in err and (tmp / "taken.ckpt").read_text() == "keep me"
    code, _, err = _calibrate(capsys, ckpt, data, "--output", tmp / "taken.ckpt", "--overwrite", "true",
                              "--chrf_threshold", "median")
    assert code == 0, err
    # "median": the median sentence chrF of the split it is fitted on
    sources = tiny_sentences(40, 2)  # the val split of write_multi30k_like (target = source)
    chrf = sorted(sentence_chrf([r.text for r in Translator(load_bundle(ckpt)).translate(sources)], sources))
    assert Calibrator.from_dict(load_bundle(tmp / "taken.ckpt").calibrator).chrf_threshold == chrf[20]
    code, _, err = _calibrate(capsys, ckpt, data, "--output", tmp / "other.ckpt", "--chrf_threshold", "high")
    assert code == 1 and "chrf_threshold must be a number or 'median'" in err


def test_confidence_does_not_depend_on_the_batch(calibrated, capsys):
    tmp, data, ckpt = calibrated
    output = tmp / "batch.calibrated.ckpt"
    assert _calibrate(capsys, ckpt, data, "--output", output, "--max_sentences", "30")[0] == 0
    translator = Translator(load_bundle(output))
    sentence = "a man runs in park with red ball"
    others = tiny_sentences(12, 4) + ["two kids play on street with green hat and a dog and a ball red"]
    alone = translator.translate([sentence], confidence=True)[0]
    for batch_size in (4, 16):
        mixed = translator.translate(others[:6] + [sentence] + others[6:], confidence=True, batch_size=batch_size)[6]
        assert mixed.text == alone.text
        assert mixed.confidence == alone.confidence and mixed.signals == alone.signals


def test_translate_scores_and_min_confidence_mark_lines(calibrated, capsys):
    tmp, data, ckpt = calibrated
    output = tmp / "scores.calibrated.ckpt"
    assert _calibrate(capsys, ckpt, data, "--output", output, "--max_sentences", "30")[0] == 0
    source = tmp / "in.txt"
    source.write_text("a dog runs\n\nthe man with red hat\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", output, "--input", source, "--scores", "true")
    assert code == 0, err
    lines = out.split("\n")[:-1]
    assert len(lines) == 3 and lines[1] == ""
    values = [float(line.split("\t")[1]) for line in (lines[0], lines[2])]
    assert all(0.0 <= v <= 1.0 for v in values) and all(line.count("\t") == 1 for line in (lines[0], lines[2]))

    threshold = (values[0] + values[1]) / 2 if values[0] != values[1] else 1.0
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", output, "--input", source,
                           "--min_confidence", threshold)
    marked = out.split("\n")[:-1]
    assert len(marked) == 3 and marked[1] == ""
    for line, value in zip((marked[0], marked[2]), values):
        assert line.endswith("\t" + REVIEW_MARK) == (value < threshold)

    code, _, err = run_cli(capsys, "translate", "--checkpoint", ckpt, "--input", source, "--scores", "true")
    assert code == 1 and "has no confidence calibrator" in err and "translator calibrate" in err
    code, _, err = run_cli(capsys, "translate", "--checkpoint", output, "--input", source, "--min_confidence", "2")
    assert code == 1 and "min_confidence must be in [0, 1]" in err


def test_evaluate_json_has_a_confidence_column(calibrated, capsys):
    tmp, data, ckpt = calibrated
    output = tmp / "evaluate.calibrated.ckpt"
    assert _calibrate(capsys, ckpt, data, "--output", output, "--max_sentences", "30")[0] == 0
    report_path = tmp / "report.json"
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", output, "--dataset", "multi30k", "--data_dir", data,
                             "--confidence", "true", "--json", report_path, "--reliability", tmp / "test.png")
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert len(report["confidence"]) == len(report["sentence_chrf"]) == 20
    summary = report["confidence_summary"]
    assert summary["sentences"] == 20 and -1.0 <= summary["spearman_chrf"] <= 1.0
    assert sum(row["n"] for row in summary["reliability"]) == 20
    assert "confidence mean" in out and (tmp / "test.png").stat().st_size > 0


def test_the_calibrator_is_calibrated_on_data_it_can_explain():
    rng = random.Random(0)
    signals, chrf = [], []
    for _ in range(2000):
        s = {name: rng.gauss(0, 1) for name in SIGNALS}
        p = 1 / (1 + math.exp(-(2.0 * s["mean_logprob"] - 1.0 * s["logprob_std"])))
        signals.append(s)
        chrf.append(80.0 if rng.random() < p else 20.0)
    calibrator = Calibrator.fit(signals, chrf, chrf_threshold=50.0)
    confidence = [calibrator(s) for s in signals]
    weights = dict(zip(calibrator.features, calibrator.weights))
    assert weights["mean_logprob"] > 1.5 and weights["logprob_std"] < -0.6 and abs(weights["coverage"]) < 0.2
    # of the sentences it rates 0.8-0.9, between 80% and 90% (give or take sampling) reach the threshold
    row = next(r for r in reliability(confidence, chrf, 50.0) if r["bin"] == "0.8-0.9")
    assert abs(row["reach_share"] - row["mean_confidence"]) < 0.08
    with pytest.raises(ValueError, match="none of the 3 sentences reach chrF 50"):
        Calibrator.fit(signals[:3], [10.0, 20.0, 30.0], chrf_threshold=50.0)
    with pytest.raises(ValueError, match="unknown confidence signal"):
        Calibrator.fit(signals, chrf, features=["mean_logprob", "bleu"])


def test_spearman_and_token_f1():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)  # ties get their mean rank
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert token_f1([1, 2, 3], [1, 2, 3]) == 1.0 and token_f1([1, 2], [3, 4]) == 0.0
    assert token_f1([1, 1, 2], [1, 2, 2]) == pytest.approx(2 * 2 / 6)


def test_the_app_shows_the_confidence_of_a_calibrated_checkpoint(calibrated, capsys):
    from translator.serve.app import ModelRegistry, TranslatorApp

    tmp, data, ckpt = calibrated
    output = tmp / "app.calibrated.ckpt"
    assert _calibrate(capsys, ckpt, data, "--output", output, "--max_sentences", "30")[0] == 0
    app = TranslatorApp(ModelRegistry([output, ckpt]))
    labels = {i.path: i.label for i in app.registry.translation}
    result = app.translate_text("a dog runs\nthe man with red hat", labels[output])
    assert result.error is None and "Confidence (the estimated chance that a line reaches chrF 70)" in result.info
    assert "line 1: " in result.info and "line 2: " in result.info
    assert "Confidence" not in app.translate_text("a dog runs", labels[ckpt]).info
