"""`evaluate` on files streams them: blocks of lines decoded and scored with summed sacreBLEU statistics."""
from __future__ import annotations

import random

import pytest
import sacrebleu

from helpers import make_tiny_checkpoint, tiny_sentences
from translator.evaluation import command as evaluate_cmd
from translator.evaluation.metrics import StreamingScore, bleu_by_length, score
from translator.inference.translator import Translator


def test_streaming_score_equals_the_whole_corpus_score():
    rng = random.Random(0)
    words = "the a cat dog sat on mat big small red".split()
    src = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 35))) for _ in range(300)]
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 20))) for _ in range(300)]
    hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 20))) for _ in range(300)]
    for tokenize in ("13a", "char"):
        scorer = StreamingScore("en", tokenize)
        for i in range(0, 300, 70):
            scorer.add(hyps[i:i + 70], refs[i:i + 70], src[i:i + 70])
        assert scorer.score() == score(hyps, refs, tokenize=tokenize)
        assert scorer.score()["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score)
        assert scorer.by_length() == bleu_by_length(src, hyps, refs, tokenize=tokenize)
    with pytest.raises(ValueError, match="empty test set"):
        StreamingScore("en").score()


@pytest.mark.slow
def test_evaluate_streams_files_in_blocks(tmp_path, monkeypatch):
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.ckpt", kind="transformer", steps=60)
    sources = tiny_sentences(23, seed=5) + [""]  # an empty line keeps its place
    refs = [f"{s} the dog" if i % 2 else s for i, s in enumerate(sources)]
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("\n".join(sources) + "\n", encoding="utf-8")
    ref.write_text("\n".join(refs), encoding="utf-8")  # no final newline: same line count
    monkeypatch.setattr(evaluate_cmd, "BLOCK_LINES", 5)  # five blocks
    translated = []
    real = Translator.translate
    monkeypatch.setattr(Translator, "translate", lambda self, texts, *a, **k: translated.append(len(texts))
                        or real(self, texts, *a, **k))
    out = tmp_path / "hyps.txt"
    options = dict(method="greedy", batch_size=4)
    report, = evaluate_cmd.evaluate(str(ckpt), source=str(src), reference=str(ref), hypotheses=str(out), **options)
    assert max(translated) <= 5 and sum(translated) == 24 + 1  # + the one-line warm-up
    hyps = out.read_text(encoding="utf-8").split("\n")[:-1]
    whole = Translator.from_checkpoint(ckpt).translate(sources, batch_size=4, method="greedy")
    assert hyps == [t.text for t in whole] and hyps[-1] == ""
    assert report["n_sentences"] == 24 and report["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert report["bleu_by_length"] == bleu_by_length(sources, hyps, refs, target_lang="en")
    limited, = evaluate_cmd.evaluate(str(ckpt), source=str(src), reference=str(ref), max_sentences=7, **options)
    assert limited["n_sentences"] == 7
    short = tmp_path / "short.txt"
    short.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"not parallel: .*src.txt has 24 lines but .*short.txt has 2 lines"):
        evaluate_cmd.evaluate(str(ckpt), source=str(src), reference=str(short), **options)
