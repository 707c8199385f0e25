"""The tokenizer cache (translator/data/tokenizer_cache.py): the same corpus and settings find the model
trained before, another setting or an edited corpus trains a new one, an incomplete entry is rebuilt,
and cache file names stay those earlier versions wrote (existing caches keep being found)."""
from __future__ import annotations

import random

import pytest

from translator.data import tokenizer_cache
from translator.data.tokenizer_cache import TokenizerSettings, cache_file, load_or_train, training_text
from translator.tokenizer import Tokenizer

WORDS = "ein mann eine frau der hund läuft über die straße mit einem roten ball zwei kinder spielen".split()
KEY = {"dataset": "multi30k", "split": "train", "src": "de", "tgt": "en", "files": [["train.de", 10, 1.5]],
       "split_seed": 0, "context_turns": None}


def pairs(n: int = 150, seed: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]
    return [(s, s.upper()) for s in src]


def counting(data: list[tuple[str, str]], reads: list[int]):
    """A train_pairs callable that records each time the corpus is read."""
    def stream():
        reads.append(1)
        return iter(data)
    return stream


def test_cache_file_names_are_the_ones_earlier_versions_wrote():
    # literal names computed by the DataModule's own cache key before it moved here
    assert cache_file("c", "multi30k", "de", "en", TokenizerSettings(400), KEY).as_posix() == \
        "c/multi30k-de-en-unigram400-afa72f36dcbb.model"
    assert cache_file("c", "multi30k", "de", "en", TokenizerSettings(1000, "bpe", False), KEY).as_posix() == \
        "c/multi30k-de-en-bpe1000-adad40159506.model"


@pytest.mark.parametrize("change", [dict(vocab_size=420), dict(tokenizer_type="bpe"), dict(joint_vocab=False),
                                    dict(character_coverage=0.9995), dict(sample=100)])
def test_every_setting_is_part_of_the_key(change):
    base = TokenizerSettings(400)
    other = TokenizerSettings(**{**base.__dict__, **change})
    assert cache_file("c", "multi30k", "de", "en", other, KEY) != cache_file("c", "multi30k", "de", "en", base, KEY)
    edited = {**KEY, "files": [["train.de", 11, 1.5]]}  # the corpus file changed size
    assert cache_file("c", "multi30k", "de", "en", base, edited) != cache_file("c", "multi30k", "de", "en", base, KEY)


def test_cache_reused_for_same_corpus_and_settings_and_rebuilt_for_another_vocab_size(tmp_path, monkeypatch):
    data, reads = pairs(), []
    settings = TokenizerSettings(vocab_size=330)
    path = cache_file(tmp_path, "multi30k", "de", "en", settings, KEY)
    first = load_or_train(path, settings, counting(data, reads))
    assert path.is_file() and reads == [1]

    monkeypatch.setattr(Tokenizer, "train", classmethod(lambda *a, **k: pytest.fail("cache not reused")))
    again = load_or_train(cache_file(tmp_path, "multi30k", "de", "en", settings, KEY), settings,
                          counting(data, reads))
    assert again.to_dict() == first.to_dict() and reads == [1]  # the corpus is not even read

    monkeypatch.undo()
    bigger = TokenizerSettings(vocab_size=340)
    other_path = cache_file(tmp_path, "multi30k", "de", "en", bigger, KEY)
    other = load_or_train(other_path, bigger, counting(data, reads))
    assert other_path != path and other_path.is_file() and reads == [1, 1]
    assert other.src_vocab_size != first.src_vocab_size


def test_separate_vocabularies_without_the_target_model_are_rebuilt(tmp_path):
    data, reads = pairs(), []
    settings = TokenizerSettings(vocab_size=330, joint_vocab=False)
    path = cache_file(tmp_path, "multi30k", "de", "en", settings, KEY)
    load_or_train(path, settings, counting(data, reads))
    assert tokenizer_cache.is_cached(path, joint_vocab=False) and reads == [1]
    (tmp_path / f"{path.name}.tgt").unlink()  # an interrupted write: the target model is written last
    assert not tokenizer_cache.is_cached(path, joint_vocab=False)
    rebuilt = load_or_train(path, settings, counting(data, reads))
    assert reads == [1, 1] and tokenizer_cache.is_cached(path, joint_vocab=False)
    assert rebuilt.src_vocab_size > 0 and rebuilt.tgt_vocab_size > 0


def test_training_text_takes_every_dialogue_turn_once():
    src, tgt = training_text([("hi <sep> how are you", "fine"), ("how are you <sep> fine", "hi")])
    assert src == ["hi", "how are you", "fine"] and tgt == ["fine", "hi"]


def test_fewer_pieces_than_asked_is_logged(tmp_path, caplog):
    settings = TokenizerSettings(vocab_size=5000)  # far more than 150 short pairs give
    tokenizer = load_or_train(cache_file(tmp_path, "multi30k", "de", "en", settings, KEY), settings,
                              lambda: iter(pairs()))
    tokenizer_cache.warn_if_smaller(tokenizer, settings.vocab_size)
    assert "--data.vocab_size 5000 is more than this corpus gives" in caplog.text
    caplog.clear()
    tokenizer_cache.warn_if_smaller(tokenizer, tokenizer.src_vocab_size)
    assert caplog.text == ""
