"""Every shipped config trains: `translator fit --config C` with its own trainer and callbacks, then its
last.ckpt and best.ckpt load and answer (`translate` for translation, `Chatbot.reply` for chat).

A config added to translator/configs/ is covered here without editing this file: the tiny corpus is
chosen by the config's `data.dataset`, the shrink options by its model family.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import write_chatbot_ko_like, write_dailydialog_like, write_multi30k_like
from translator.artifacts.checkpoint import CheckpointMeta
from translator.cli import main
from translator.decoding import with_recipe
from translator.inference.chatbot import Chatbot
from translator.inference.translator import Translator

CONFIGS = sorted((Path(__file__).parents[1] / "translator" / "configs").glob("*.yaml"))
SHRINK = {  # every family as small as a CLI run of seconds allows
    "Transformer": {"d_model": 32, "num_heads": 2, "ff_size": 64, "num_encoder_layers": 1, "num_decoder_layers": 1},
    "AttentionSeq2Seq": {"emb_size": 16, "enc_hidden_size": 16, "dec_hidden_size": 16, "attention_size": 16},
    "LSTMSeq2Seq": {"emb_size": 16, "hidden_size": 16},
}


CORPORA = {"multi30k": lambda root: write_multi30k_like(root, n_train=120, n_val=12, n_test=12),
           "chatbot-ko": write_chatbot_ko_like, "dailydialog": write_dailydialog_like}


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
    assert ("loss-min.ckpt" in checkpoints) == ("chat" in config.stem)  # the task's checkpoints (Task.checkpoints)
    recipe = settings["model"].get("decoding")  # a recipe's decoding is recorded and becomes the default
    for name in ("last.ckpt", "best.ckpt"):
        meta = CheckpointMeta.from_path(checkpoints[name])
        assert meta.hparams.get("decoding") == recipe
        assert meta.default_decoding() == with_recipe(meta.task.default_decoding(meta.data), recipe)
        if "chat" in config.stem:
            reply = Chatbot.from_checkpoint(checkpoints[name]).reply([], "the dog runs")
            assert isinstance(reply, str)
        else:
            (hypothesis,) = Translator.from_checkpoint(checkpoints[name]).translate(["a man in park"])
            hypothesis = hypothesis.text
            assert isinstance(hypothesis, str)


def test_a_backward_chat_model_trains_on_reversed_pairs_with_the_forward_tokenizer(tmp_path: Path):
    """`--data.reverse true --data.tokenizer_path FORWARD.ckpt`: p(message | reply), on the forward model's pieces."""
    from translator.artifacts.checkpoint import checkpoint_tokenizer, load_bundle
    from translator.training.datamodule import Seq2SeqDataModule

    config = Path(__file__).parents[1] / "translator" / "configs" / "chat_chatbot_ko.yaml"
    data = write_chatbot_ko_like(tmp_path / "data")
    common = ["--config", str(config), "--data.data_dir", str(data), "--data.vocab_size", "320",
              "--data.cache_dir", str(tmp_path / "cache"), "--data.max_tokens", "300", "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
              "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true",
              *[f"--model.model.init_args.{k}={v}" for k, v in SHRINK["Transformer"].items()]]
    main(["fit", *common, "--trainer.logger.init_args.save_dir", str(tmp_path / "fwd")])
    forward = next((tmp_path / "fwd").rglob("last.ckpt"))
    main(["fit", *common, "--trainer.logger.init_args.save_dir", str(tmp_path / "bwd"), "--data.reverse", "true",
          "--data.context_dropout", "0", "--data.tokenizer_path", str(forward)])
    backward = load_bundle(next((tmp_path / "bwd").rglob("last.ckpt")))
    assert backward.tokenizer.to_dict() == checkpoint_tokenizer(forward).to_dict()
    assert backward.data["reverse"] is True
    forward_pairs = Seq2SeqDataModule("chatbot-ko", data_dir=str(data)).pairs("val")
    reversed_pairs = Seq2SeqDataModule("chatbot-ko", data_dir=str(data), reverse=True).pairs("val")
    assert reversed_pairs == [(reply, message) for message, reply in forward_pairs] and forward_pairs
