"""Training loggers: TensorBoard works out of the box beside the default CSV logger."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_multi30k_like
from translator.cli import main

CONFIG = Path(__file__).parents[1] / "translator" / "configs" / "transformer.yaml"
TINY = ["--model.model.init_args.d_model", "32", "--model.model.init_args.num_heads", "2",
        "--model.model.init_args.ff_size", "64", "--model.model.init_args.num_encoder_layers", "1",
        "--model.model.init_args.num_decoder_layers", "1"]


@pytest.mark.slow
@pytest.mark.parametrize("logger, written", [("TensorBoardLogger", "events.out.tfevents.*"), ("CSVLogger", "metrics.csv")])
def test_shipped_config_logs_with_tensorboard_or_csv(tmp_path, logger, written):
    data = write_multi30k_like(tmp_path / "data", n_train=60, n_val=6, n_test=6)
    main(["fit", "--config", str(CONFIG), "--data.data_dir", str(data), "--data.vocab_size", "300",
          "--data.cache_dir", str(tmp_path / "cache"), "--data.max_tokens", "300",
          "--trainer.logger", logger, "--trainer.logger.save_dir", str(tmp_path / "logs"),
          "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "1",
          "--model.val_bleu", "false", "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true",
          "--trainer.default_root_dir", str(tmp_path), *TINY])
    files = list((tmp_path / "logs").rglob(written))
    assert files and files[0].stat().st_size > 0
    # the config's run name reaches the logger whichever class replaces the CSV default
    assert "transformer-multi30k-de-en" in files[0].parts
