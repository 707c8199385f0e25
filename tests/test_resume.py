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
from translator.artifacts.checkpoint import atomic_torch_save, load_bundle, read_checkpoint
from translator.training.callbacks import collect_random_states, restore_random_states
from translator.training.resume import resumed_lr_factor, schedule_anchor
from translator.training.system import lr_factor

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
  weight_average: {average}
data:
  dataset: multi30k
  data_dir: "{data}"
  cache_dir: "{cache}"
  vocab_size: 300
  max_tokens: 100
"""


def _config(tmp: Path, name: str, data: Path, steps: int = STEPS, average: float = 0.0) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(CONFIG.format(steps=steps, ckpt=tmp / name, data=data, cache=tmp / "cache", average=average))
    return path


def _fit(tmp: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # cwd: LightningCLI writes its config.yaml there when there is no logger
    return subprocess.Popen([sys.executable, "-m", "translator", "fit", *args], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _weights(path: Path, key: str = "state_dict") -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[key]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("average", [0.0, 3.0], ids=["last-weights", "weight-average"])
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path, average):
    """With --model.weight_average the checkpoint's weights are the average and the raw weights ride along:
    both continue bit for bit."""
    data = write_multi30k_like(tmp_path / "data", n_train=300, n_val=10, n_test=10)
    whole = _fit(tmp_path, "--config", str(_config(tmp_path, "whole", data, average=average)))
    out, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, out

    killed = _fit(tmp_path / "data", "--config", str(_config(tmp_path, "killed", data, average=average)))
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
    resumed = _fit(tmp_path / "data", "--config", str(_config(tmp_path, "killed", data, average=average)),
                   "--ckpt_path", str(last))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out

    assert read_checkpoint(last)["global_step"] == STEPS
    for key in ["state_dict"] + (["current_model_state"] if average else []):
        a, b = _weights(tmp_path / "whole" / "last.ckpt", key), _weights(last, key)
        difference = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert difference == 0.0, f"{key}: max weight difference {difference} after resuming from step {step}"
    if average:  # the average is not the last weights, and it is what inference loads
        a, b = _weights(last), _weights(last, "current_model_state")
        assert max(float((a[k] - b[k]).abs().max()) for k in a) > 1e-4
        loaded = load_bundle(last).model.state_dict()
        assert all(torch.equal(loaded[k.removeprefix("model.")], v) for k, v in a.items())


def test_new_run_length_continues_the_cosine_without_a_jump():
    warmup, old_total, new_total, step = 10, 100, 200, 60
    reached = lr_factor(step, warmup, "cosine", old_total)
    state = {"last_epoch": step, "base_lrs": [2e-3], "_last_lr": [2e-3 * reached]}

    def factor(s, anchor):
        return resumed_lr_factor(s, lambda k: lr_factor(k, warmup, "cosine", new_total), anchor, new_total)

    assert abs(factor(step, None) - reached) > 0.05  # without the anchor the learning rate would jump
    anchor = schedule_anchor(state, factor, None)
    assert anchor[0] == step and anchor[1] == pytest.approx(reached)
    values = [factor(s, anchor) for s in range(step, new_total)]
    assert values[0] == pytest.approx(reached) and all(a >= b for a, b in zip(values, values[1:]))
    assert max(abs(a - b) for a, b in zip(values, values[1:])) < 0.02 and factor(new_total, anchor) == 0.0
    # The same run length again: the schedule (and a previous anchor) stays as it is.
    same = {"last_epoch": 150, "base_lrs": [2e-3], "_last_lr": [2e-3 * factor(150, anchor)]}
    assert schedule_anchor(same, factor, anchor) == anchor
    plain = {"last_epoch": 50, "base_lrs": [1.0], "_last_lr": [lr_factor(50, warmup, "cosine", new_total)]}
    assert schedule_anchor(plain, factor, None) is None


def test_random_states_survive_weights_only_loading(tmp_path):
    import random

    import numpy as np

    path = tmp_path / "states.pt"
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    atomic_torch_save(collect_random_states(), path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_random_states(torch.load(path, weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and (expected[1] == got[1]).all() and expected[2] == got[2]


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)

    def broken(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
