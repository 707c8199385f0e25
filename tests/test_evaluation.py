"""Tests for translator.evaluation's metrics, reports and plots: scores equal sacreBLEU's, buckets partition,
errors name files; and for the one line reader (translator.data.readers.read_lines)."""

import json

import pytest
import sacrebleu

from translator.data.readers import read_lines
from translator.evaluation import metrics as ev
from translator.evaluation import plots, report as reports

HYPS = [
    "The cat sat on the mat.",
    "A man is riding a red bike down the street.",
    "Two dogs play in the snow near a big wooden fence while children watch them from a porch.",
    "hello world",
    "A woman in a blue dress is singing on a stage in front of a large crowd of people at night.",
    "the boy eats",
]
REFS = [
    "The cat is sitting on the mat.",
    "A man rides a red bicycle down the street.",
    "Two dogs are playing in the snow next to a large wooden fence while kids watch from the porch.",
    "Hello, world!",
    "A woman wearing a blue dress sings on stage in front of a big crowd of people at night.",
    "The boy is eating.",
]


def test_score_matches_sacrebleu_directly():
    s = ev.score(HYPS, REFS, target_lang="en")
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS])  # defaults: cased, 13a
    chrf = sacrebleu.corpus_chrf(HYPS, [REFS])
    assert s["bleu"] == pytest.approx(bleu.score, abs=1e-9)
    assert s["chrf"] == pytest.approx(chrf.score, abs=1e-9)
    assert s["bleu_detail"]["precisions"] == pytest.approx(bleu.precisions)
    assert s["bleu_detail"]["bp"] == pytest.approx(bleu.bp)
    assert (s["bleu_detail"]["sys_len"], s["bleu_detail"]["ref_len"]) == (bleu.sys_len, bleu.ref_len)
    assert s["tokenize"] == "13a" and s["n"] == len(HYPS)
    assert 0 < s["bleu"] < 100


def test_signatures_are_sacrebleus():
    s = ev.score(HYPS, REFS)
    for key, metric in (("bleu", sacrebleu.BLEU()), ("chrf", sacrebleu.CHRF())):
        metric.corpus_score(HYPS, [REFS])  # the signature needs the number of references
        assert s["signature"][key] == str(metric.get_signature())
    assert "tok:13a" in s["signature"]["bleu"] and "case:mixed" in s["signature"]["bleu"]
    lower = ev.score(HYPS, REFS, lowercase=True)
    assert "case:lc" in lower["signature"]["bleu"]
    assert lower["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True).score)


def test_korean_uses_char_tokenizer_and_reports_it():
    assert ev.choose_bleu_tokenizer("ko") == "char"
    assert ev.choose_bleu_tokenizer("ko-KR") == "char"
    hyps, refs = ["나는 학교에 갑니다", "오늘 날씨가 좋네요"], ["저는 학교에 가요", "오늘은 날씨가 좋아요"]
    s = ev.score(hyps, refs, target_lang="ko")
    assert s["tokenize"] == "char" and "tok:char" in s["signature"]["bleu"]
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="char").score)


def test_tokenizer_choice_other_languages():
    for lang in ("en", "fr", "de", None, ""):
        assert ev.choose_bleu_tokenizer(lang) == "13a"
    assert ev.choose_bleu_tokenizer("zh") == "zh"
    ja = "ja-mecab" if ev.tokenizer_available("ja-mecab") else "char"
    assert ev.choose_bleu_tokenizer("ja") == ja
    assert ev.score(["a b"], ["a b"], tokenize="intl")["tokenize"] == "intl"
    with pytest.raises(ValueError, match="unknown BLEU tokenizer"):
        ev.score(["a"], ["a"], tokenize="nope")


def test_score_errors():
    with pytest.raises(ValueError, match="empty test set"):
        ev.score([], [])
    with pytest.raises(ValueError, match=r"3 hypotheses vs 2 references"):
        ev.score(["a", "b", "c"], ["a", "b"])


def test_bleu_by_length_buckets_partition_and_match_sacrebleu():
    lengths = [3, 12, 18, 2, 35, 14]
    rows = ev.bleu_by_length(lengths, HYPS, REFS)
    assert [r["bucket"] for r in rows] == ["0-10", "11-15", "16-20", "21-25", "26-30", "31+"]
    assert sum(r["n"] for r in rows) == len(HYPS)
    for r in rows:
        idx = [i for i, n in enumerate(lengths) if r["lo"] <= n and (r["hi"] is None or n <= r["hi"])]
        assert r["n"] == len(idx)
        if not idx:
            assert r["bleu"] is None and r["chrf"] is None
            continue
        sub_h, sub_r = [HYPS[i] for i in idx], [REFS[i] for i in idx]
        assert r["bleu"] == pytest.approx(sacrebleu.corpus_bleu(sub_h, [sub_r]).score)
        assert r["chrf"] == pytest.approx(sacrebleu.corpus_chrf(sub_h, [sub_r]).score)
    # Source strings count whitespace words.
    by_text = ev.bleu_by_length(["w " * n for n in lengths], HYPS, REFS)
    assert [r["n"] for r in by_text] == [r["n"] for r in rows]


def test_bleu_by_length_errors():
    with pytest.raises(ValueError, match="falls in no bucket"):
        ev.bleu_by_length([5, 50], ["a", "b"], ["a", "b"], buckets=[(0, 10)])
    with pytest.raises(ValueError, match="overlap"):
        ev.bleu_by_length([5], ["a"], ["a"], buckets=[(0, 10), (10, None)])
    with pytest.raises(ValueError, match="2 source lengths but 1 hypotheses"):
        ev.bleu_by_length([5, 6], ["a"], ["a"])


def test_distinct_n_and_chat_metrics():
    hyps = ["a b a", "a b"]
    # unigrams: a b a a b -> 2 unique / 5; bigrams: (a b)(b a)(a b) -> 2 unique / 3 (none cross replies)
    assert ev.distinct_n(hyps, 1) == pytest.approx(2 / 5)
    assert ev.distinct_n(hyps, 2) == pytest.approx(2 / 3)
    assert ev.distinct_n(["one", ""], 2) == 0.0
    assert ev.distinct_n([], 1) == 0.0
    # one normalisation for every metric: lowercase, punctuation as its own word, apostrophes kept
    assert ev.chat_words("I DON'T know, Sir!") == ["i", "don't", "know", ",", "sir", "!"]
    assert ev.distinct_n(["Yes.", "yes ."], 1) == pytest.approx(2 / 4)
    m = ev.chat_metrics(["I don't know.", "I don't know.", "Sure, let's go", "I don't know."])
    assert m["top_reply_share"] == pytest.approx(3 / 4) and m["top_reply"] == "I don't know."
    assert m["mean_length"] == pytest.approx((4 + 4 + 4 + 4) / 4)  # "i don't know ." / "sure , let's go"
    assert m["distinct_1"] == pytest.approx(8 / 16)  # i don't know . sure , let's go: 8 of 16
    assert m["generic_share"] == 1.0  # only two distinct replies: both are among the ten most frequent
    with pytest.raises(ValueError, match="empty"):
        ev.chat_metrics([])


def test_generic_share_counts_the_ten_most_frequent_replies():
    replies = [f"reply {i}" for i in range(10)] * 2 + [f"unique {i}" for i in range(20)]  # 40 replies
    m = ev.chat_metrics(replies)
    assert m["generic_share"] == pytest.approx(20 / 40)  # the ten repeated replies, twice each
    assert m["top_reply_share"] == pytest.approx(2 / 40)


def test_entropy_of_known_ngram_distributions():
    assert ev.ngram_entropy(["a b c d"], 4) == 0.0  # one 4-gram
    assert ev.ngram_entropy(["a b c d e"], 4) == pytest.approx(1.0)  # two equally likely 4-grams: 1 bit
    assert ev.ngram_entropy(["a b c d", "e f g h", "a b c d", "e f g h"], 4) == pytest.approx(1.0)
    assert ev.ngram_entropy(["w x y z", "a b c d", "e f g h", "i j k l"], 4) == pytest.approx(2.0)
    assert ev.ngram_entropy(["too short"], 4) == 0.0


def test_chat_metrics_put_the_references_beside_the_replies():
    m = ev.chat_metrics(["ok .", "ok ."], ["a b c", "d e f"])
    assert m["reference_distinct_2"] == 1.0 and m["distinct_2"] == pytest.approx(1 / 2)
    assert m["distinct_2_ratio"] == pytest.approx(0.5)
    assert m["reference_mean_length"] == 3.0 and m["mean_length"] == 2.0
    with pytest.raises(ValueError, match="2 replies but 1 references"):
        ev.chat_metrics(["a", "b"], ["c"])


def test_plot_writes_png(tmp_path):
    lengths = [3, 12, 18, 2, 35, 14]
    outputs = {"lstm": [" ".join(h.split()[:4]) for h in HYPS], "attention": HYPS, "transformer": REFS}
    results = {name: ev.bleu_by_length(lengths, hyps, REFS) for name, hyps in outputs.items()}
    out = plots.plot_bleu_by_length(results, tmp_path / "plots" / "bleu_by_length.png", title="test")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_report_table_and_json_round_trip(tmp_path):
    report = reports.build_report(
        HYPS, REFS, source_lengths=[3, 12, 18, 2, 35, 14], checkpoint="checkpoints/transformer.ckpt",
        dataset="multi30k", split="test_2016_flickr", decoding={"method": "beam", "beam_size": 5},
        seconds=2.0, generated_tokens=100, chat=True,
    )
    assert report["label"] == "transformer" and report["n_sentences"] == 6
    assert report["sentences_per_second"] == pytest.approx(3.0)
    assert report["tokens_per_second"] == pytest.approx(50.0)
    assert {"distinct_1", "distinct_2", "bleu_by_length", "signature"} <= report.keys()
    table = reports.format_table([report, {**report, "label": "lstm", "sentences_per_second": None}])
    assert "transformer" in table and "lstm" in table and "beam_size=5" in table and "31+" in table
    report["note"] = "déjà vu — 한국어"
    path = reports.write_json([report], tmp_path / "out" / "report.json")
    assert json.loads(path.read_text(encoding="utf-8")) == [report]
    assert "한국어" in path.read_text(encoding="utf-8")  # ensure_ascii=False
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left behind


def test_read_lines_keeps_empty_lines_and_crlf(tmp_path):
    f = tmp_path / "src.txt"
    f.write_bytes("one\r\n\r\nthree\n\nfive".encode())
    assert read_lines(f) == ["one", "", "three", "", "five"]
    f.write_bytes(b"a\n\n")
    assert read_lines(f) == ["a", ""]
    f.write_bytes(b"")
    assert read_lines(f) == []
    f.write_bytes("\ufeffbonjour\n".encode())
    assert read_lines(f) == ["bonjour"]


def test_read_lines_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_lines(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: invalid UTF-8"):
        read_lines(bad)
    with pytest.raises(ValueError, match="cannot read"):
        read_lines(tmp_path)

