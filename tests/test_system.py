"""The trainer end to end: shipped YAMLs through the CLI, self-contained checkpoints, resume, DDP."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import write_multi30k_like
from translator.artifacts.checkpoint import load_bundle, read_checkpoint
from translator.cli import main
from translator.training.system import lr_factor

CONFIGS = sorted((Path(__file__).parents[1] / "translator" / "configs").glob("*.yaml"))
TRANSLATION_CONFIGS = [c for c in CONFIGS if c.stem in ("rnn", "lstm", "attention", "transformer")]
TINY = {  # shrink every family so a CLI run takes seconds
    "transformer": ["--model.model.init_args.d_model", "32", "--model.model.init_args.num_heads", "2",
                    "--model.model.init_args.ff_size", "64", "--model.model.init_args.num_encoder_layers", "1",
                    "--model.model.init_args.num_decoder_layers", "1"],
    "attention": ["--model.model.init_args.emb_size", "16", "--model.model.init_args.enc_hidden_size", "16",
                  "--model.model.init_args.dec_hidden_size", "16", "--model.model.init_args.attention_size", "16"],
    "lstm": ["--model.model.init_args.emb_size", "16", "--model.model.init_args.hidden_size", "16"],
}


class _Opaque:
    """An arbitrary class: weights_only loading must refuse to unpickle it."""


def _family(config: Path) -> str:
    text = config.read_text()
    return next(name for name, cls in (("transformer", "Transformer"), ("attention", "AttentionSeq2Seq"),
                                       ("lstm", "LSTMSeq2Seq")) if f"translator.models.{cls}" in text)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_multi30k_like(tmp_path_factory.mktemp("data"), n_train=120, n_val=12, n_test=12)


def _fit_args(config: Path, data_dir: Path, root: Path, *extra: str) -> list[str]:
    family = _family(config)
    return ["fit", "--config", str(config), "--data.data_dir", str(data_dir), "--data.vocab_size", "300",
            "--data.cache_dir", str(root / "cache"), "--data.max_tokens", "400",
            "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            f"--trainer.callbacks.dirpath={root / 'ckpt'}", "--trainer.callbacks.save_last=true",
            *TINY[family], *extra]


def test_lr_schedules_warm_up_then_decay():
    assert lr_factor(0, 10, "inverse_sqrt", 0) == pytest.approx(0.1)
    assert lr_factor(9, 10, "inverse_sqrt", 0) == pytest.approx(1.0)
    assert lr_factor(39, 10, "inverse_sqrt", 0) == pytest.approx(0.5)
    assert lr_factor(99, 10, "cosine", 100) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="unknown lr schedule 'x'"):
        lr_factor(0, 1, "x", 0)


def test_weight_average_follows_the_run_and_forgets_its_start():
    """The polynomial-decay average (--model.weight_average eta): eta -> 0 is the plain running mean; for eta > 0
    most of the weight is on the run's last 1 / (eta + 1), whatever its length, and the start is forgotten."""
    from translator.training.callbacks import polynomial_decay_weight

    for eta, steps in ((1e-9, 50), (3.0, 200), (3.0, 4000), (9.0, 4000)):
        weights = torch.zeros(steps, dtype=torch.float64)  # each update's share of the average after `steps`
        for t in range(steps):
            w = polynomial_decay_weight(eta, t)
            weights *= 1 - w
            weights[t] = w
        assert weights.sum() == pytest.approx(1.0)
        if eta < 1e-6:
            assert torch.allclose(weights, torch.full_like(weights, 1 / steps))
            continue
        tail = int(steps / (eta + 1))
        assert weights[-tail:].sum() > 0.6 and weights[: steps // 10].sum() < 1e-3
        assert bool((weights[1:] >= weights[:-1]).all())  # newer updates never weigh less
    from helpers import TINY_MODELS
    from translator.training.system import Seq2SeqSystem

    for bad in (-1.0, float("inf"), float("nan"), "10"):
        with pytest.raises(ValueError, match="weight_average must be a finite number >= 0"):
            Seq2SeqSystem(TINY_MODELS["transformer"](50, 0), weight_average=bad)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_every_yaml_parses(config: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: translator.models." in printed and "dataset:" in printed
    # The shared trainer defaults (translator.cli.TRAINER_DEFAULTS) reach every config; this one is a correctness rule.
    assert "  use_distributed_sampler: false\n" in printed and "  gradient_clip_val: 1.0\n" in printed
    assert "loggers.CSVLogger" in printed and "filename: epoch{epoch:02d}" in printed


def _printed_callbacks(capsys, *args: str) -> list[dict]:
    with pytest.raises(SystemExit):
        main(["fit", *args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]


def _monitors(callbacks: list[dict]) -> list:
    return [(c["class_path"].rsplit(".", 1)[1], (c.get("init_args") or {}).get("monitor")) for c in callbacks]


def test_the_checkpoints_kept_are_the_tasks(capsys, tmp_path):
    """No shipped YAML lists callbacks: the dataset's task chooses them (translator.tasks.Task.checkpoints), a
    config or --trainer.callbacks replaces them, --trainer.callbacks+ adds to them."""
    chat = [("ModelCheckpoint", None), ("ModelCheckpoint", "val/loss"), ("ModelCheckpoint", "epoch")]
    translation = [("ModelCheckpoint", "val/bleu"), ("ModelCheckpoint", "epoch")]
    by_name = {c.stem: c for c in CONFIGS}
    assert not any("callbacks" in (yaml.safe_load(c.read_text())["trainer"]) for c in CONFIGS)
    assert _monitors(_printed_callbacks(capsys, "--config", str(by_name["chat_dailydialog"]))) == chat
    assert _monitors(_printed_callbacks(capsys, "--config", str(by_name["chat_chatbot_ko"]))) == chat
    assert _monitors(_printed_callbacks(capsys, "--config", str(by_name["transformer"]))) == translation
    switched = ["--config", str(by_name["transformer"]), "--data.dataset", "dailydialog", "--data.src_lang", "null",
                "--data.tgt_lang", "null"]
    assert _monitors(_printed_callbacks(capsys, *switched)) == chat  # the task follows the dataset
    added = _printed_callbacks(capsys, "--config", str(by_name["chat_dailydialog"]), "--trainer.callbacks+",
                               "lightning.pytorch.callbacks.LearningRateMonitor")
    assert _monitors(added) == [*chat, ("LearningRateMonitor", None)]
    own = tmp_path / "own.yaml"
    own.write_text("trainer:\n  callbacks:\n  - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
                   "    init_args: {monitor: val/loss, filename: mine}\n")
    replaced = _printed_callbacks(capsys, "--config", str(by_name["chat_dailydialog"]), "--config", str(own))
    assert _monitors(replaced) == [("ModelCheckpoint", "val/loss")] and replaced[0]["init_args"]["filename"] == "mine"


@pytest.mark.parametrize("config", TRANSLATION_CONFIGS, ids=lambda c: c.stem)
def test_yaml_fast_dev_run_through_cli(config: Path, data_dir: Path, tmp_path: Path):
    main(_fit_args(config, data_dir, tmp_path, "--trainer.fast_dev_run", "2"))


def test_checkpoint_is_self_contained_and_resumable(data_dir: Path, tmp_path: Path):
    config = next(c for c in CONFIGS if c.stem == "transformer")
    main(_fit_args(config, data_dir, tmp_path, "--trainer.max_epochs", "1"))
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file()
    checkpoint = read_checkpoint(last)  # weights_only loading
    assert set(checkpoint["translator"]) >= {"model", "tokenizer", "data"}

    # Reload with nothing else around: identical logits to the weights in the file.
    bundle = load_bundle(last)
    src = torch.tensor([[5, 6, 7, 0]])
    tgt_in = torch.tensor([[2, 8, 9]])
    logits = bundle.model(src, src != 0, tgt_in)
    again = load_bundle(last).model(src, src != 0, tgt_in)
    torch.testing.assert_close(logits, again, rtol=0, atol=0)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    assert torch.equal(bundle.model.state_dict()["out.weight"], state["out.weight"])

    # Resume continues from where it stopped: epoch and optimizer step counters advance.
    steps_before = checkpoint["loops"]["fit_loop"]["epoch_loop.automatic_optimization.optim_progress"][
        "optimizer"]["step"]["total"]["completed"]
    main(_fit_args(config, data_dir, tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", str(last)))
    resumed = read_checkpoint(last)
    assert resumed["epoch"] == 1
    steps_after = resumed["loops"]["fit_loop"]["epoch_loop.automatic_optimization.optim_progress"][
        "optimizer"]["step"]["total"]["completed"]
    assert steps_after == 2 * steps_before


def test_resume_with_a_different_tokenizer_fails_clearly(data_dir: Path, tmp_path: Path, capsys):
    config = next(c for c in CONFIGS if c.stem == "lstm")
    main(_fit_args(config, data_dir, tmp_path, "--trainer.max_steps", "2"))
    last = tmp_path / "ckpt" / "last.ckpt"
    with pytest.raises(SystemExit):
        main(_fit_args(config, data_dir, tmp_path, "--trainer.max_steps", "4", "--ckpt_path", str(last),
                       "--data.vocab_size", "320", "--data.tokenizer_type", "bpe"))
    err = capsys.readouterr().err
    assert "cannot resume" in err and "--data.vocab_size 320 (checkpoint: 300)" in err and "tokenizer" in err


def test_corrupt_and_foreign_checkpoints_fail_clearly(tmp_path: Path):
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.ckpt is a damaged or truncated torch checkpoint"):
        load_bundle(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.ckpt is not a translator checkpoint"):
        load_bundle(foreign)
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "translator": _Opaque()}, unsafe)
    with pytest.raises(ValueError, match="unsafe.ckpt holds objects that safe .weights_only. loading refuses"):
        load_bundle(unsafe)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_bundle(tmp_path / "missing.ckpt")


def test_unknown_model_option_is_named(capsys):
    config = next(c for c in CONFIGS if c.stem == "transformer")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--model.model.init_args.d_modle", "64", "--print_config"])
    assert exit_info.value.code != 0
    assert "d_modle" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_ddp_on_cpu(data_dir: Path, tmp_path: Path):
    config = next(c for c in CONFIGS if c.stem == "transformer")
    args = _fit_args(config, data_dir, tmp_path, "--trainer.max_steps", "3", "--trainer.strategy", "ddp",
                     "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--model.val_bleu", "false",
                     "--trainer.limit_val_batches", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "translator", *args], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    # rank 0 encoded the splits once (prepare_data); both ranks memory-mapped that one token store
    stores = sorted(p.name.split("-")[3] for p in (tmp_path / "cache" / "tokens").iterdir())
    assert stores == ["train", "val"]


def test_without_val_bleu_the_best_checkpoint_is_the_lowest_val_loss(data_dir: Path, tmp_path: Path):
    """--model.val_bleu false logs no BLEU: best.ckpt follows val/loss instead of stopping the run at validation."""
    config = next(c for c in CONFIGS if c.stem == "transformer")
    args = _fit_args(config, data_dir, tmp_path, "--trainer.max_epochs", "2", "--model.val_bleu", "false",
                     "--trainer.limit_val_batches", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "translator", *args], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    best = list(tmp_path.rglob("best.ckpt"))
    assert len(best) == 1
    callbacks = torch.load(best[0], map_location="cpu", weights_only=False)["callbacks"]
    assert any("val/loss" in key and "best" in str(state.get("best_model_path")) for key, state in callbacks.items())


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_matches_torch_cross_entropy(fused: bool, dtype: torch.dtype):
    """The (compiled) label-smoothed loss, its gradient, and the plain NLL equal F.cross_entropy's, pads ignored."""
    import torch.nn.functional as F

    from translator.training.loss import label_smoothed_loss

    torch.manual_seed(0)
    pad, eps = 1, 0.1
    target = torch.randint(0, 50, (37,))
    target[::5] = pad
    x = (3 * torch.randn(37, 50)).to(dtype)
    ours = x.clone().requires_grad_(True)
    theirs = x.float().clone().requires_grad_(True)
    loss, nll = label_smoothed_loss(ours, target, eps, pad, fused=fused)
    expected = F.cross_entropy(theirs, target, ignore_index=pad, label_smoothing=eps)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(x.float(), target, ignore_index=pad))
    tol = {"atol": 1e-2, "rtol": 1e-2} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(ours.grad.float(), theirs.grad, **tol)
    assert ours.grad.dtype == dtype and not ours.grad[target == pad].any()  # pads get no gradient


def test_loss_falls_back_to_eager_when_compiling_fails(monkeypatch):
    """No C++ compiler (or any compile error): one warning, then the eager formula with the same values."""
    import torch.nn.functional as F

    from translator.training import loss as loss_module

    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    fused = loss_module.fused_smoothed_cross_entropy
    monkeypatch.setattr(fused, "compiled", broken)
    monkeypatch.setattr(fused, "failed", False)
    x, target = torch.randn(6, 9), torch.tensor([1, 2, 0, 4, 0, 8])
    with pytest.warns(UserWarning, match="InvalidCxxCompiler"):
        loss, _ = loss_module.label_smoothed_loss(x, target, 0.1, 0)
    torch.testing.assert_close(loss, F.cross_entropy(x, target, ignore_index=0, label_smoothing=0.1))
    assert fused.failed  # later calls go straight to eager, without warning again
