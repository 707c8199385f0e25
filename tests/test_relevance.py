"""Relevance of chat models (hits@1 of k) and BLEU-1/2 as dialogue papers compute them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import make_tiny_checkpoint, run_cli, tiny_sentences, write_dailydialog_like

from translator.evaluation.metrics import draw_distractors, hits_at_1, sentence_bleu_n
from translator.evaluation.relevance import relevance
from translator.inference.translator import Translator

CHAT = dict(dataset="dailydialog", src_lang="en", tgt_lang="en", task="chat", chat_context_turns=1,
            context_dropout=0.1)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("relevance")
    return {"copy": make_tiny_checkpoint(root / "copy.ckpt", steps=400, **CHAT),  # learns p(r|c) high iff r == c
            "untrained": make_tiny_checkpoint(root / "untrained.ckpt", steps=0, **CHAT),
            "backward": make_tiny_checkpoint(root / "backward.ckpt", steps=150, reverse=True, **CHAT)}


def distinct_sentences(n: int, seed: int) -> list[str]:
    return list(dict.fromkeys(tiny_sentences(4 * n, seed)))[:n]


def test_a_model_that_prefers_the_true_reply_finds_it_every_time(ckpts):
    """The copy model gives the true reply (= its context) by far the highest likelihood, and so does its backward
    model (also a copy model). Its p(r) was never trained (no context dropout in this loop): lambda 0 here."""
    texts = distinct_sentences(40, seed=11)
    translator = Translator.from_checkpoint(ckpts["copy"], backward=ckpts["backward"])
    report = relevance(translator, texts, texts, k=10, lm_weight=0.0)
    assert report["hits1_loglik"] == 1.0 and report["hits1_antilm"] == 1.0 and report["hits1_mmi"] == 1.0
    assert report["hits_k"] == 10 and report["relevance_pairs"] == 40


def test_a_model_that_knows_nothing_finds_it_about_one_time_in_k(ckpts):
    texts = distinct_sentences(200, seed=12)
    report = relevance(Translator.from_checkpoint(ckpts["untrained"]), texts, texts, k=10)
    assert 0.03 <= report["hits1_loglik"] <= 0.2  # chance is 0.1; 200 pairs: a standard error of 0.02
    assert 0.03 <= report["hits1_antilm"] <= 0.2
    assert report["hits1_mmi"] is None  # no backward model


def test_distractors_are_seeded_and_other_texts():
    replies = distinct_sentences(30, seed=13)
    first = draw_distractors(replies, [0, 5, 7], 5, seed=3)
    assert first == draw_distractors(replies, [0, 5, 7], 5, seed=3)  # seeded
    for row, others in zip([0, 5, 7], first):
        texts = [replies[j] for j in others]
        assert len(others) == 4 and replies[row] not in texts and len(set(texts)) == 4


def test_relevance_caps_the_pairs(ckpts):
    texts = distinct_sentences(50, seed=14)
    report = relevance(Translator.from_checkpoint(ckpts["untrained"]), texts, texts, k=5, max_pairs=12)
    assert report["relevance_pairs"] == 12


def test_distractors_never_repeat_the_true_reply():
    replies = ["yes .", "yes .", "no .", "maybe .", "thanks .", "yes ."]
    for row, others in zip(range(6), draw_distractors(replies, range(6), 4, seed=0)):
        assert all(replies[j] != replies[row] for j in others) and len({replies[j] for j in others}) == 3
    with pytest.raises(ValueError, match="at least 5 different replies"):
        draw_distractors(replies, [0], 5)


def test_hits_at_1_counts_ties_as_misses():
    assert hits_at_1([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]) == pytest.approx(1 / 3)


def test_bleu_1_and_2_are_mean_sentence_bleu():
    # "a b c" vs "a b d": unigram precision 2/3, bigram 1/2, no brevity penalty.
    assert sentence_bleu_n(["a b c"], ["a b d"], 1) == pytest.approx(100 * 2 / 3)
    assert sentence_bleu_n(["a b c"], ["a b d"], 2) == pytest.approx(100 * math.sqrt(2 / 3 * 1 / 2))
    both = sentence_bleu_n(["a b c", "x y z"], ["a b d", "x y z"], 2)
    assert both == pytest.approx((100 * math.sqrt(1 / 3) + 100) / 2)  # the mean over replies, not corpus BLEU


def test_evaluate_reports_relevance_and_bleu_n_under_the_same_names(ckpts, tmp_path, capsys, monkeypatch):
    data = write_dailydialog_like(tmp_path / "data")
    out = tmp_path / "report.json"
    code, stdout, err = run_cli(capsys, "evaluate", "--checkpoint", ckpts["copy"], "--backward", ckpts["backward"],
                                "--dataset", "dailydialog", "--split", "val", "--data_dir", data, "--hits_k", 5,
                                "--max_pairs", 8, "--json", out, "--decode.max_len_b", 5)
    assert code == 0, err
    report = json.loads(out.read_text())
    for key in ("bleu_1", "bleu_2", "hits1_loglik", "hits1_antilm", "hits1_mmi", "seconds_per_reply"):
        assert report[key] is not None and key in stdout  # the table's column is the JSON key
    assert report["relevance_pairs"] == 8 and report["hits_k"] == 5
    assert report["decoding"]["backward_weight"] == 1.0  # the backward model re-ranked the replies too
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", ckpts["copy"], "--dataset", "dailydialog",
                           "--data_dir", data, "--hits_k", 1)
    assert code == 1 and "hits_k" in err and len(err.strip().splitlines()) == 1
    code, stdout, err = run_cli(capsys, "evaluate", "--checkpoint", ckpts["copy"], "--dataset", "dailydialog",
                                "--split", "val", "--data_dir", data, "--hits_k", 500, "--json", out,
                                "--decode.max_len_b", 5)
    assert code == 0 and "no hits@1 of 500" in err  # too few replies to rank among: the other metrics still come
    assert json.loads(out.read_text())["bleu_2"] is not None
