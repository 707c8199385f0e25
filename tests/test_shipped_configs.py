"""Every shipped config trains: `translator fit --config C` with its own trainer and callbacks, then its
last.ckpt and best.ckpt load and answer (`translate` for translation, `Chatbot.reply` for chat).

A config added to translator/configs/ is covered here without editing this file: the tiny corpus is
chosen by the config's `data.dataset`, the shrink options by its model family.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import yaml

from helpers import WORDS, tiny_sentences, write_multi30k_like
from translator.cli import main
from translator.inference import Chatbot, Translator

CONFIGS = sorted((Path(__file__).parents[1] / "translator" / "configs").glob("*.yaml"))
SHRINK = {  # every family as small as a CLI run of seconds allows
    "Transformer": {"d_model": 32, "num_heads": 2, "ff_size": 64, "num_encoder_layers": 1, "num_decoder_layers": 1},
    "AttentionSeq2Seq": {"emb_size": 16, "enc_hidden_size": 16, "dec_hidden_size": 16, "attention_size": 16},
    "LSTMSeq2Seq": {"emb_size": 16, "hidden_size": 16},
}


def _write_chatbot_ko(root: Path) -> None:
    folder = root / "chatbot-ko"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(folder / "ChatbotData.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Q", "A", "label"])
        for question in tiny_sentences(160, seed=4):
            writer.writerow([question, " ".join(rng.choice(WORDS) for _ in range(4)), 0])


def _write_dailydialog(root: Path) -> None:
    for split, folder, seed in (("train", "train", 5), ("validation", "validation", 6), ("test", "test", 7)):
        path = root / "dailydialog" / folder
        path.mkdir(parents=True, exist_ok=True)
        turns = tiny_sentences(240 if split == "train" else 24, seed)
        dialogues = [" __eou__ ".join(turns[i:i + 4]) + " __eou__" for i in range(0, len(turns), 4)]
        (path / f"dialogues_{split}.txt").write_text("\n".join(dialogues) + "\n", encoding="utf-8")


CORPORA = {"multi30k": lambda root: write_multi30k_like(root, n_train=120, n_val=12, n_test=12),
           "chatbot-ko": _write_chatbot_ko, "dailydialog": _write_dailydialog}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_every_shipped_config_trains_and_its_checkpoints_answer(config: Path, tmp_path: Path):
    settings = yaml.safe_load(config.read_text())
    dataset = settings["data"]["dataset"]
    model_class = settings["model"]["model"]["class_path"].rsplit(".", 1)[1]
    assert dataset in CORPORA, f"{config.name}: add a tiny corpus for dataset {dataset!r} to this test"
    CORPORA[dataset](tmp_path / "data")
    shrink = [f"--model.model.init_args.{key}={value}" for key, value in SHRINK[model_class].items()]
    main(["fit", "--config", str(config), "--data.data_dir", str(tmp_path / "data"), "--data.vocab_size", "320",
          "--data.cache_dir", str(tmp_path / "cache"), "--data.max_tokens", "300",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.max_epochs", "2",
          "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
          "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true", *shrink])
    checkpoints = {path.name: path for path in (tmp_path / "runs").rglob("*.ckpt")}
    assert {"last.ckpt", "best.ckpt"} <= set(checkpoints), sorted(checkpoints)
    for name in ("last.ckpt", "best.ckpt"):
        if "chat" in config.stem:
            reply = Chatbot.from_checkpoint(checkpoints[name]).reply([], "the dog runs")
            assert isinstance(reply, str)
        else:
            (hypothesis,) = Translator.from_checkpoint(checkpoints[name]).translate(["a man in park"])
            hypothesis = hypothesis.text
            assert isinstance(hypothesis, str)
