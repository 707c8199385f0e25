"""Exact resume: a `translator fit` killed with SIGKILL mid-epoch and resumed from last.ckpt ends with the
same weights, bit for bit, as the run that was never stopped (dropout on); resume conflicts are loud."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import write_multi30k_like
from translator.callbacks import atomic_torch_save, collect_random_states, restore_random_states
from translator.checkpoint import read_checkpoint
from translator.cli import main
from translator.resume import resumed_lr_factor, schedule_anchor
from translator.system import lr_factor

ROOT = Path(__file__).parents[1]
STEPS = 120  # 4.8 epochs of 25 batches: checkpoints every 5 steps land mid-epoch and at epoch ends
CONFIG = """\
seed_everything: 7
trainer:
  max_steps: {steps}
  precision: 32-true
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  limit_val_batches: 0
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: "{ckpt}", every_n_train_steps: 5, save_top_k: -1, save_last: true,
                  filename: "step{{step:03d}}", auto_insert_metric_name: false}}
model:
  model:
    class_path: translator.models.Transformer
    init_args: {{d_model: 16, num_heads: 2, num_encoder_layers: 1, num_decoder_layers: 1, ff_size: 32, dropout: 0.3}}
  lr: 0.003
  warmup_steps: 10
  lr_schedule: cosine
  val_bleu: false
  compile_loss: false
data:
  dataset: multi30k
  data_dir: "{data}"
  cache_dir: "{cache}"
  vocab_size: 300
  max_tokens: 100
"""


def _config(tmp: Path, name: str, data: Path, steps: int = STEPS) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(CONFIG.format(steps=steps, ckpt=tmp / name, data=data, cache=tmp / "cache"))
    return path


def _fit(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "translator", "fit", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


@pytest.mark.filterwarnings("ignore")
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    data = write_multi30k_like(tmp_path / "data", n_train=300, n_val=10, n_test=10)
    whole = _fit("--config", str(_config(tmp_path, "whole", data)))
    out, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, out

    killed = _fit("--config", str(_config(tmp_path, "killed", data)))
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "step035.ckpt").exists():  # mid-epoch 2 (25 batches an epoch)
        assert killed.poll() is None, killed.communicate()[0]
        assert time.time() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    last = tmp_path / "killed" / "last.ckpt"
    step = read_checkpoint(last)["global_step"]  # loadable whenever the kill landed
    assert 30 <= step < STEPS, step  # the step checkpoint is written just before last.ckpt
    resumed = _fit("--config", str(_config(tmp_path, "killed", data)), "--ckpt_path", str(last))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out

    a, b = _weights(tmp_path / "whole" / "last.ckpt"), _weights(last)
    assert read_checkpoint(last)["global_step"] == STEPS
    difference = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert difference == 0.0, f"max weight difference {difference} after resuming from step {step}"
