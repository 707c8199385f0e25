"""Hostile input: every command given broken files, bad checkpoints of every kind, bad options, busy
ports and abusive app requests answers with one clear message and the right exit code, never a traceback.

Most cases call `translator.cli.main([...])` in-process (fast); a few need a real process (streaming
stdin). Each case asserts its exit code, a fragment of its message, and that no traceback is shown.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import make_tiny_checkpoint, run_cli, tiny_sentences, write_multi30k_like
from translator.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "translator" / "configs" / "transformer.yaml"
#: the peak learning rate the fixture checkpoint is trained with: the shipped config's, whatever it is
CONFIG_LR = yaml.safe_load(CONFIG.read_text())["model"]["lr"]


class _Evil:
    """Unpickling this would run a shell command; safe loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/translator-hostile-pwned",))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny checkpoint, a tiny corpus, and bad checkpoints of every kind."""
    root = tmp_path_factory.mktemp("hostile")
    ckpt = make_tiny_checkpoint(root / "tiny.ckpt", steps=20)
    data = write_multi30k_like(root / "data", n_train=60, n_val=6, n_test=6)
    bad = root / "bad"
    bad.mkdir()
    (bad / "zero.ckpt").write_bytes(b"")
    whole = ckpt.read_bytes()
    (bad / "truncated.ckpt").write_bytes(whole[: len(whole) // 2])
    (bad / "random.ckpt").write_bytes(bytes(range(256)) * 40)
    (bad / "text.ckpt").write_text("this is not a checkpoint, just some notes\n")
    torch.save({"weights": torch.zeros(3)}, bad / "foreign.ckpt")
    torch.save(torch.zeros(3), bad / "tensor.ckpt")
    torch.save(_Evil(), bad / "evil_zip.ckpt")
    (bad / "evil_pickle.ckpt").write_bytes(pickle.dumps(_Evil()))
    (bad / "folder.ckpt").mkdir()
    return {"root": root, "ckpt": ckpt, "data": data, "bad": bad}


BAD_CHECKPOINTS = {  # file name -> what the message must say
    "zero.ckpt": "is empty (0 bytes)",
    "truncated.ckpt": "damaged or truncated",
    "random.ckpt": "not a torch checkpoint",
    "text.ckpt": "is a text file, not a checkpoint",
    "foreign.ckpt": "is not a translator checkpoint",
    "tensor.ckpt": "is not a translator checkpoint",
    "evil_zip.ckpt": "refuses to unpickle",
    "evil_pickle.ckpt": "refuses to unpickle",
    "folder.ckpt": "is a directory",
    "missing.ckpt": "checkpoint not found",
}


def assert_clean_error(code: int, out: str, err: str, fragment: str, expected_code: int | None = None) -> None:
    assert "Traceback" not in out + err, err
    assert code != 0, (out, err)
    if expected_code is not None:
        assert code == expected_code, (code, err)
    assert fragment in err, err
    assert "error:" in err


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("TRANSLATOR_DEBUG", raising=False)


# ---- bad checkpoints, every command --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BAD_CHECKPOINTS))
def test_translate_bad_checkpoint(env, tmp_path, capsys, name):
    src = write(tmp_path / "in.txt", "a man\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", env["bad"] / name, "--input", src)
    assert_clean_error(code, out, err, BAD_CHECKPOINTS[name], 1)
    assert len(err.strip().splitlines()) == 1 and "…If yo" not in err
    assert not Path("/tmp/translator-hostile-pwned").exists()


@pytest.mark.parametrize("name", ["zero.ckpt", "text.ckpt", "evil_pickle.ckpt", "foreign.ckpt"])
def test_evaluate_bad_checkpoint(env, tmp_path, capsys, name):
    src = write(tmp_path / "in.txt", "a man\n")
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["bad"] / name, "--source", src,
                             "--reference", src)
    assert_clean_error(code, out, err, BAD_CHECKPOINTS[name], 1)


@pytest.mark.parametrize("command", ["fit", "validate", "test"])
@pytest.mark.parametrize("name", sorted(BAD_CHECKPOINTS))
def test_lightning_commands_bad_ckpt_path(env, capsys, command, name):
    if command != "fit" and name not in ("zero.ckpt", "evil_zip.ckpt", "truncated.ckpt", "text.ckpt"):
        pytest.skip("validate/test share fit's check; four kinds are enough")
    code, out, err = run_cli(capsys, command, "--config", CONFIG, "--data.data_dir", env["data"],
                             "--ckpt_path", env["bad"] / name)
    assert_clean_error(code, out, err, BAD_CHECKPOINTS[name], 1)
    assert not Path("/tmp/translator-hostile-pwned").exists()


@pytest.mark.parametrize("name", ["zero.ckpt", "evil_zip.ckpt", "text.ckpt"])
def test_app_bad_checkpoint(env, capsys, name):
    code, out, err = run_cli(capsys, "app", "--checkpoint", env["bad"] / name, "--checkpoints_dir", "null")
    assert_clean_error(code, out, err, BAD_CHECKPOINTS[name], 1)


def test_average_bad_checkpoint(env, tmp_path, capsys):
    code, out, err = run_cli(capsys, "average", env["ckpt"], env["bad"] / "truncated.ckpt",
                             "--output", tmp_path / "avg.ckpt")
    assert_clean_error(code, out, err, "damaged or truncated", 1)


# ---- input files ---------------------------------------------------------------------------------
def _translate(capsys, env, src: Path, *extra) -> tuple[int, str, str]:
    return run_cli(capsys, "translate", "--checkpoint", env["ckpt"], "--input", src, "--decode.method", "greedy",
                   *extra)


GOOD_INPUTS = {  # input bytes -> number of output lines; every one must translate with exit 0
    "nul": (b"a man\x00runs\nthe dog\n", 2),
    "control": (b"\x01\x02\x07 red\n\x1b[31mball\n", 2),
    "rtl": ("\u05d0\u05d9\u05e9 \u05e8\u05e5\n\u0631\u062c\u0644 \u064a\u0631\u0643\u0636\n\u202eevil\n".encode(), 3),
    "crlf": (b"a man\r\nthe dog\r\n", 2),
    "bom": (b"\xef\xbb\xbfa man\nthe dog\n", 2),
    "no_final_newline": (b"a man\nthe dog", 2),
    "blank_lines": (b"\n   \n\t\na man\n\n", 5),
    "line_separators": ("a\u2028man\x0bruns\x1c\x85\nthe dog\n".encode(), 2),
    "emoji": ("😀🎉\n\U0010ffff\n".encode(), 2),
    "empty_file": (b"", 0),
    "huge_line": ((("two kids play " * 80_000) + "\n").encode(), 1),  # 1.1 MB in one line
}


@pytest.mark.parametrize("kind", sorted(GOOD_INPUTS))
def test_awkward_input_keeps_line_alignment(env, tmp_path, capsys, kind):
    data, lines = GOOD_INPUTS[kind]
    src = write(tmp_path / "in.txt", data)
    code, out, err = _translate(capsys, env, src)
    assert code == 0 and "Traceback" not in err, err
    assert out.count("\n") == lines
    assert "\r" not in out and "\ufeff" not in out


BAD_INPUTS = {
    "bad_utf8": (b"a man\n\xff\xfe bad\n", "in.txt:2: invalid UTF-8"),
    "bad_utf8_truncated_char": (b"a man\nthe \xc3\n", "in.txt:2: invalid UTF-8"),
    "latin1": ("café\n".encode("latin-1"), "in.txt:1: invalid UTF-8"),
    "utf16": ("a man\n".encode("utf-16"), "in.txt:1: invalid UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_bytes(env, tmp_path, capsys, kind):
    data, fragment = BAD_INPUTS[kind]
    code, out, err = _translate(capsys, env, write(tmp_path / "in.txt", data))
    assert_clean_error(code, out, err, fragment, 1)


def test_input_is_a_directory(env, tmp_path, capsys):
    assert_clean_error(*_translate(capsys, env, tmp_path), "is a directory", 1)


def test_input_missing(env, tmp_path, capsys):
    assert_clean_error(*_translate(capsys, env, tmp_path / "nope.txt"), "nope.txt: no such file", 1)


def test_output_is_a_directory(env, tmp_path, capsys):
    src = write(tmp_path / "in.txt", "a man\n")
    assert_clean_error(*_translate(capsys, env, src, "--output", tmp_path), "is a directory", 1)


def test_output_under_a_file_is_found_before_the_model_loads(env, tmp_path, capsys):
    src = write(tmp_path / "in.txt", "a man\n")
    # A missing checkpoint as well: the output problem must be reported first (found before any loading).
    code, out, err = run_cli(capsys, "translate", "--checkpoint", tmp_path / "missing.ckpt", "--input", src,
                             "--output", src / "out.txt")
    assert_clean_error(code, out, err, "is a file, not a folder", 1)
    assert "File exists" not in err


def test_output_not_truncated_when_the_checkpoint_is_bad(env, tmp_path, capsys):
    src = write(tmp_path / "in.txt", "a man\n")
    keep = write(tmp_path / "old.out", "precious\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", env["bad"] / "zero.ckpt", "--input", src,
                             "--output", keep)
    assert_clean_error(code, out, err, "is empty (0 bytes)", 1)
    assert keep.read_text() == "precious\n"


# ---- options -------------------------------------------------------------------------------------
OPTION_CASES = {
    "negative_max_len_a": (["--decode.max_len_a", "-1"], "max_len_a must be >= 0", 1),
    "negative_max_len_b": (["--decode.max_len_b", "-5"], "max_len_b must be an integer >= 0", 1),
    "legacy_negative_max_len_a": (["--max_len_a", "-2"], "max_len_a must be >= 0", 1),
    "unknown_option": (["--bogus", "3"], "unrecognized arguments: --bogus", 2),
    "bad_method": (["--decode.method", "topk"], "topk", 2),
    "zero_batch": (["--batch_size", "0"], "batch_size must be >= 1", 1),
    "bad_device": (["--device", "cuda:7"], "not available", 1),
    "typo_device": (["--device", "gpu0"], "unknown device", 1),
    "bad_precision": (["--precision", "fp8"], "unknown precision 'fp8'", 1),
    "nan_beam": (["--decode.beam_size", "nan"], "beam_size", 2),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_translate_options(env, tmp_path, capsys, case):
    extra, fragment, expected = OPTION_CASES[case]
    src = write(tmp_path / "in.txt", "a man\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", env["ckpt"], "--input", src, *extra)
    assert_clean_error(code, out, err, fragment, expected)
    assert len(err.strip().splitlines()) <= 2  # the error (and a deprecation note for legacy flags)


def test_unknown_config_key_is_one_line(env, tmp_path, capsys):
    config = write(tmp_path / "c.yaml", "bogus_key: 3\n")
    src = write(tmp_path / "in.txt", "a man\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", env["ckpt"], "--input", src, "--config", config)
    assert_clean_error(code, out, err, "bogus_key", 2)
    assert len(err.strip().splitlines()) == 1 and "usage:" not in err


def test_fit_unknown_option_is_one_line(capsys):
    code, out, err = run_cli(capsys, "fit", "--config", CONFIG, "--model.bogus", "3")
    assert_clean_error(code, out, err, "--model.bogus", 2)
    assert len(err.strip().splitlines()) == 1 and "usage:" not in err


def test_fit_unknown_config_key_is_one_line(tmp_path, capsys):
    config = write(tmp_path / "c.yaml", CONFIG.read_text() + "bogus_key: 3\n")
    code, out, err = run_cli(capsys, "fit", "--config", config)
    assert_clean_error(code, out, err, "bogus_key", 2)
    assert len(err.strip().splitlines()) == 1


def test_fit_misspelt_model_option_is_one_line(capsys):
    code, out, err = run_cli(capsys, "fit", "--config", CONFIG, "--model.model.init_args.d_modle", "64")
    assert_clean_error(code, out, err, "d_modle", 2)
    assert len(err.strip().splitlines()) <= 2


def test_unknown_command(capsys):
    code, out, err = run_cli(capsys, "translat")
    assert code == 2 and "unknown command 'translat'" in err and "Traceback" not in err


def test_unknown_dataset(capsys):
    code, out, err = run_cli(capsys, "data", "stats", "wmt99")
    assert code != 0 and "wmt99" in err and "Traceback" not in err


# ---- evaluate --------------------------------------------------------------------------------------
def test_evaluate_mismatched_line_counts(env, tmp_path, capsys):
    src = write(tmp_path / "src.txt", "a man\nthe dog\n")
    ref = write(tmp_path / "ref.txt", "A MAN\n")
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["ckpt"], "--source", src, "--reference", ref)
    assert_clean_error(code, out, err, "has 2 lines but", 1)


def test_evaluate_bad_utf8_reference(env, tmp_path, capsys):
    src = write(tmp_path / "src.txt", "a man\n")
    ref = write(tmp_path / "ref.txt", b"\xff\n")
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["ckpt"], "--source", src, "--reference", ref)
    assert_clean_error(code, out, err, "ref.txt:1: invalid UTF-8", 1)


def test_evaluate_wrong_language_pair(env, tmp_path, capsys):
    src = write(tmp_path / "src.txt", "a man\n")
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["ckpt"], "--source", src, "--reference", src,
                             "--src_lang", "fr")
    assert_clean_error(code, out, err, "translates de->en, but fr->en", 1)


def test_evaluate_directory_as_source(env, tmp_path, capsys):
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["ckpt"], "--source", tmp_path,
                             "--reference", tmp_path)
    assert_clean_error(code, out, err, "cannot read", 1)


def test_evaluate_all_blank_reference_warns(env, tmp_path, capsys):
    src = write(tmp_path / "src.txt", "a man\nthe dog\n")
    ref = write(tmp_path / "ref.txt", "  \n\n")
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["ckpt"], "--source", src, "--reference", ref,
                             "--decode.method", "greedy")
    assert code == 0 and "Traceback" not in err
    assert "every line of" in err and "is blank" in err


# ---- fit -------------------------------------------------------------------------------------------
TINY_FIT = ["--model.model.init_args.d_model", "16", "--model.model.init_args.num_heads", "2",
            "--model.model.init_args.ff_size", "32", "--model.model.init_args.num_encoder_layers", "1",
            "--model.model.init_args.num_decoder_layers", "1", "--data.vocab_size", "300",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true",
            "--trainer.max_steps", "2", "--model.compile_loss", "false", "--model.val_bleu", "false"]


def test_fit_with_every_pair_dropped_fails_with_the_counts(env, tmp_path, capsys):
    code, out, err = run_cli(capsys, "fit", "--config", CONFIG, "--data.data_dir", env["data"], "--data.max_len", "2",
                             "--data.cache_dir", tmp_path / "cache", "--trainer.default_root_dir", tmp_path, *TINY_FIT)
    assert_clean_error(code, out, err, "no training batches left", 1)
    assert "0 pairs in 0 batches" in err and "longer than 2 tokens dropped" in err and "raise --data.max_len" in err


def test_fit_with_checkpointing_off_runs(env, tmp_path, capsys):
    """The shared trainer defaults add ModelCheckpoints; turning checkpointing off drops them (no Lightning error)."""
    code, out, err = run_cli(capsys, "fit", "--config", CONFIG, "--data.data_dir", env["data"],
                             "--data.cache_dir", tmp_path / "cache", "--trainer.default_root_dir", tmp_path,
                             "--trainer.limit_val_batches", "0", "--trainer.enable_checkpointing", "false", *TINY_FIT)
    assert code == 0 and "Traceback" not in err, err[-2000:]
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.fixture(scope="module")
def fitted(env, tmp_path_factory):
    """A real `translator fit` checkpoint (2 steps) to resume from."""
    root = tmp_path_factory.mktemp("fitted")
    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(env["data"]), "--data.cache_dir",
            str(root / "cache"), "--trainer.default_root_dir", str(root), "--trainer.limit_val_batches", "0",
            "--trainer.callbacks", "lightning.pytorch.callbacks.ModelCheckpoint",
            f"--trainer.callbacks.dirpath={root / 'ckpt'}", "--trainer.callbacks.save_last=true", *TINY_FIT]
    try:
        main(args)
    except SystemExit as exit_:
        assert not exit_.code
    return root, args, root / "ckpt" / "last.ckpt"


@pytest.mark.parametrize("change, fragment", [
    (["--model.lr", "0.1"], f"--model.lr 0.1 (checkpoint: {CONFIG_LR})"),
    (["--model.model.init_args.d_model", "32"], "--model.model.init_args.d_model 32 (checkpoint: 16)"),
    (["--model.lr_schedule", "constant"], "--model.lr_schedule constant (checkpoint: cosine)"),
    (["--data.vocab_size", "280"], "--data.vocab_size 280 (checkpoint: 300)"),
])
def test_resume_refuses_options_it_would_drop(fitted, capsys, change, fragment):
    root, args, last = fitted
    code, out, err = run_cli(capsys, *args, "--ckpt_path", last, "--trainer.max_steps", "4", *change)
    assert_clean_error(code, out, err, fragment, 1)
    assert "cannot resume" in err


def test_resume_refusal_names_the_values_that_continue_the_run(fitted, tmp_path, capsys):
    """The refusal's give-back line, appended to the same command, resumes (as when the config file differs)."""
    root, args, last = fitted
    args = [f"--trainer.callbacks.dirpath={tmp_path}" if a.startswith("--trainer.callbacks.dirpath=") else a
            for a in args]  # the resumed run writes its own last.ckpt, not the fixture's
    change = ["--model.lr", "0.1", "--data.vocab_size", "280"]
    code, out, err = run_cli(capsys, *args, "--ckpt_path", last, "--trainer.max_steps", "4", *change)
    assert_clean_error(code, out, err, "give the checkpoint's values", 1)
    give_back = shlex.split(err.split("give the checkpoint's values", 1)[1].splitlines()[1])
    assert give_back == ["--model.lr", str(CONFIG_LR), "--data.vocab_size", "300"]
    code, out, err = run_cli(capsys, *args, "--ckpt_path", last, "--trainer.max_steps", "4", *change, *give_back)
    assert code == 0 and "cannot resume" not in err and "Traceback" not in err, err[-2000:]


def test_resume_lists_the_options_it_applies(fitted, capsys):
    root, args, last = fitted
    code, out, err = run_cli(capsys, *args, "--ckpt_path", last, "--trainer.max_steps", "4",
                             "--model.label_smoothing", "0.2")
    assert code == 0 and "Traceback" not in err, err
    assert "--model.label_smoothing 0.2 (checkpoint: 0.1)" in err and "--trainer.max_steps 4 (checkpoint: 2)" in err


# ---- app -------------------------------------------------------------------------------------------
def test_app_busy_port(env, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_cli(capsys, "app", "--checkpoint", env["ckpt"], "--checkpoints_dir", "null",
                                 "--port", port)
    assert_clean_error(code, out, err, f"port {port} on 127.0.0.1 is already in use", 1)


def test_app_port_out_of_range(env, capsys):
    code, out, err = run_cli(capsys, "app", "--checkpoint", env["ckpt"], "--checkpoints_dir", "null",
                             "--port", "70000")
    assert_clean_error(code, out, err, "between 1 and 65535", 1)


@pytest.fixture(scope="module")
def service(env):
    from translator.serve.service import ModelRegistry, TranslatorService

    return TranslatorService(ModelRegistry([env["ckpt"]]), max_input_chars=2000)


APP_REQUESTS = {  # (text, checkpoint, decoder, beam) -> message fragment
    "empty": (("", "", "greedy", 5), "the input is empty"),
    "blank": (("  \n\t ", "", "greedy", 5), "the input is empty"),
    "none": ((None, "", "greedy", 5), "the input is empty"),
    "too_long": (("x" * 50_000, "", "greedy", 5), "50,000 characters"),
    "beam_zero": (("a man", "", "beam", 0), "between 1 and 16"),
    "beam_huge": (("a man", "", "beam", 10_000), "between 1 and 16"),
    "beam_text": (("a man", "", "beam", "lots"), "must be a number"),
    "beam_nan": (("a man", "", "beam", float("nan")), "beam size"),
    "decoder": (("a man", "", "nucleus", 5), "Unknown decoder 'nucleus'"),
    "checkpoint": (("a man", "/etc/passwd", "greedy", 5), "Unknown checkpoint"),
}


@pytest.mark.parametrize("case", sorted(APP_REQUESTS))
def test_app_refuses_bad_requests_before_queueing(service, case):
    from translator.serve.service import UserError

    args, fragment = APP_REQUESTS[case]
    with pytest.raises(UserError, match=None) as info:
        service.check_translate(*args)  # what the Gradio validator runs before a request is queued
    assert fragment in str(info.value)
    result = service.translate_text(*args)
    assert result.error and fragment in result.error and result.text == ""


def test_app_over_budget_request_is_refused(service):
    service.max_request_cost, saved = 500, service.max_request_cost
    try:
        result = service.translate_text("\n".join(["a man runs"] * 50), "", "beam", 16)
    finally:
        service.max_request_cost = saved
    assert result.error and "the limit is 500" in result.error and "smaller beam" in result.error


def test_app_time_limit_stops_a_request(service):
    service.time_limit, saved = 1e-6, service.time_limit
    try:
        result = service.translate_text("\n".join(["a man runs in park"] * 90), "", "beam", 8)
    finally:
        service.time_limit = saved
    assert result.error and "longer than" in result.error and "stopped" in result.error


def test_app_heavy_requests_do_not_hold_every_worker(env):
    """Two large requests on two workers: a one-sentence request is answered long before they finish."""
    from translator.serve.service import ModelRegistry, TranslatorService

    svc = TranslatorService(ModelRegistry([env["ckpt"]]), max_input_chars=20_000, workers=2)
    svc.translate_text("a man", "", "greedy", 5)  # load the model
    finished: dict[str, float] = {}
    start = time.monotonic()

    def heavy(name: str) -> None:
        svc.translate_text("\n".join(tiny_sentences(400, seed=len(name))), "", "beam", 8)
        finished[name] = time.monotonic() - start

    threads = [threading.Thread(target=heavy, args=(n,)) for n in ("h1", "h2")]
    for t in threads:
        t.start()
    time.sleep(0.3)
    small = svc.translate_text("the dog", "", "greedy", 5)
    small_done = time.monotonic() - start
    for t in threads:
        t.join()
    assert small.error is None and len(finished) == 2
    assert small_done < min(finished.values()), (small_done, finished)


# ---- streaming ---------------------------------------------------------------------------------------
def test_translate_streams_chunks_and_keeps_order(env, tmp_path, capsys, monkeypatch):
    """A file is read, translated and written a bounded chunk at a time, in order, blank lines kept."""
    from translator.inference.command import CHUNK_BATCHES
    from translator.inference.translator import Translator

    seen: list[int] = []
    original = Translator.translate

    def spy(self, texts, *args, **kwargs):
        seen.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(Translator, "translate", spy)
    lines = [s if i % 7 else "" for i, s in enumerate(tiny_sentences(230, seed=3))]
    src = write(tmp_path / "in.txt", "\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", env["ckpt"], "--input", src, "--batch_size", "4",
                             "--decode.method", "greedy", "--output", tmp_path / "out.txt")
    assert code == 0, err
    assert max(seen) <= 4 * CHUNK_BATCHES and sum(seen) == len(lines)
    got = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert got.pop() == "" and len(got) == len(lines)
    assert all(g == "" for g, s in zip(got, lines) if s == "")  # blank lines stay blank, in place
    alone = run_cli(capsys, "translate", "--checkpoint", env["ckpt"], "--input", write(tmp_path / "one.txt",
                    lines[5] + "\n"), "--decode.method", "greedy")[1]
    assert got[5] == alone.rstrip("\n")


def test_progress_bar_whenever_stderr_is_a_terminal(env, tmp_path, capsys, monkeypatch):
    src = write(tmp_path / "in.txt", "\n".join(tiny_sentences(30, seed=4)) + "\n")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run_cli(capsys, "translate", "--checkpoint", env["ckpt"], "--input", src,
                             "--decode.method", "greedy")
    assert code == 0 and "30/30" in err and out.count("\n") == 30  # to stdout, and still a bar


def test_piped_stdin_is_answered_line_by_line(env):
    """With stdin left open, each line's translation comes out before the next line is sent."""
    proc = subprocess.Popen([sys.executable, "-m", "translator", "translate", "--checkpoint", str(env["ckpt"]),
                             "--decode.method", "greedy"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        answers = []
        for line in (b"a man runs\n", b"\n", b"the dog\n"):
            proc.stdin.write(line)
            proc.stdin.flush()
            answers.append(_readline(proc.stdout, timeout=120 if answers else 900))  # the first waits for the load
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert all(a.endswith(b"\n") for a in answers) and answers[1] == b"\n"  # one line back per line sent


def _readline(stream, timeout: float) -> bytes:
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box, "no output line within the timeout: translate waited for the end of input"
    return box[0]


# ---- crafted or damaged checkpoints (issue 35) ---------------------------------------------------------
def _crafted(ckpt: Path, folder: Path, name: str, change) -> Path:
    """A copy of the tiny checkpoint with `change(checkpoint_dict)` applied."""
    checkpoint = torch.load(ckpt, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, folder / name)
    return folder / name


def _duplicate_piece(checkpoint) -> None:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(checkpoint["translator"]["tokenizer"]["src"])
    proto.pieces[11].piece = proto.pieces[10].piece
    checkpoint["translator"]["tokenizer"]["src"] = proto.SerializeToString()


def _set(*keys, value):
    def change(checkpoint):
        target = checkpoint["translator"]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return change


CRAFTED = {  # file name -> (change, what the message must say)
    "tok_random.ckpt": (_set("tokenizer", "src", value=bytes(range(256)) * 8), "damaged tokenizer"),
    "tok_truncated.ckpt": (_set("tokenizer", "src", value=lambda b: b[: len(b) // 2]), "do not parse"),
    "tok_duplicate.ckpt": (_duplicate_piece, "is already defined"),
    "tok_string.ckpt": (_set("tokenizer", "src", value="not bytes"), "is bytes, not str"),
    "tok_no_src.ckpt": (_set("tokenizer", value={"tgt": None}), "damaged tokenizer"),
    "init_unknown.ckpt": (_set("model", "init_args", value=lambda a: {**a, "bogus": 3}), "'bogus'"),
    "class_base.ckpt": (_set("model", "class_path", value="translator.models.base.Seq2Seq"), "model interface"),
    "huge_d_model.ckpt": (_set("model", "init_args", value=lambda a: {**a, "d_model": 16384}),
                          "does not match its stored weights"),
    "huge_ff.ckpt": (_set("model", "init_args", value=lambda a: {**a, "ff_size": 65536}),
                     "does not match its stored weights"),
}


@pytest.fixture(scope="module")
def crafted(env):
    folder = env["root"] / "crafted"
    folder.mkdir(exist_ok=True)
    return {name: _crafted(env["ckpt"], folder, name, change) for name, (change, _) in CRAFTED.items()}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_checkpoint_is_one_message(crafted, tmp_path, capsys, name):
    """Checked before the model is built: a crafted size allocates nothing (16384-wide layers would take GBs)."""
    src = write(tmp_path / "in.txt", "a man\n")
    start = time.monotonic()
    code, out, err = run_cli(capsys, "translate", "--checkpoint", crafted[name], "--input", src)
    assert_clean_error(code, out, err, CRAFTED[name][1], 1)
    assert len(err.strip().splitlines()) == 1
    assert time.monotonic() - start < 30


def test_symlink_loop_checkpoint_is_not_reported_missing(env, tmp_path, capsys):
    loop = tmp_path / "loop.ckpt"
    loop.symlink_to(loop)
    src = write(tmp_path / "in.txt", "a man\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", loop, "--input", src)
    assert_clean_error(code, out, err, "symbolic links", 1)
    assert "not found" not in err


def test_device_as_checkpoint_is_not_called_empty(env, tmp_path, capsys):
    src = write(tmp_path / "in.txt", "a man\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", "/dev/zero", "--input", src)
    assert_clean_error(code, out, err, "is a character device, not a regular file", 1)
    assert "empty" not in err


@contextlib.contextmanager
def _unblocking(fifo: Path, every: float = 20.0):
    """Open and close the writing end of `fifo` every `every` s while the block runs: code that would wait
    on it for ever (a reader with no writer) gets an end of file instead, so its test fails, not hangs."""
    stop = threading.Event()

    def run():
        while not stop.wait(every):
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading now
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def test_fifo_as_checkpoint_is_refused_without_waiting(env, tmp_path, capsys):
    fifo = tmp_path / "model.ckpt"
    os.mkfifo(fifo)
    src = write(tmp_path / "in.txt", "a man\n")
    start = time.monotonic()
    with _unblocking(fifo):
        code, out, err = run_cli(capsys, "translate", "--checkpoint", fifo, "--input", src)
    assert_clean_error(code, out, err, "is a FIFO (named pipe), not a regular file", 1)
    assert time.monotonic() - start < 15


def test_fifo_as_output_is_refused_before_the_model_loads(env, tmp_path, capsys):
    fifo = tmp_path / "out.txt"
    os.mkfifo(fifo)
    src = write(tmp_path / "in.txt", "a man\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", tmp_path / "missing.ckpt", "--input", src,
                             "--output", fifo)
    assert_clean_error(code, out, err, "is a FIFO (named pipe), not a regular file", 1)


def test_fifo_as_input_says_it_waits_for_a_writer(env, tmp_path, capsys):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as f:
            f.write(b"a man\nthe dog\n")
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    code, out, err = _translate(capsys, env, fifo)
    thread.join(5)
    assert code == 0 and "Traceback" not in err, err
    assert out.count("\n") == 2 and "waiting for a writer" in err


# ---- outputs: never an input, written whole (issue 35) -------------------------------------------------
def test_output_that_is_the_input_is_refused(env, tmp_path, capsys):
    src = write(tmp_path / "s.txt", "a man\nthe dog\n")
    code, out, err = _translate(capsys, env, src, "--output", src)
    assert_clean_error(code, out, err, "is the input", 1)
    assert src.read_text() == "a man\nthe dog\n"


def test_output_that_links_to_the_input_is_refused(env, tmp_path, capsys):
    src = write(tmp_path / "s.txt", "a man\nthe dog\n")
    (tmp_path / "link.txt").symlink_to(src)
    code, out, err = _translate(capsys, env, src, "--output", tmp_path / "link.txt")
    assert_clean_error(code, out, err, "is the input", 1)
    assert src.read_text() == "a man\nthe dog\n"


def test_output_that_is_the_checkpoint_is_refused(env, tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(env["ckpt"].read_bytes())
    src = write(tmp_path / "s.txt", "a man\n")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", ckpt, "--input", src, "--output", ckpt)
    assert_clean_error(code, out, err, "is the checkpoint", 1)
    assert ckpt.read_bytes() == env["ckpt"].read_bytes()


def test_evaluate_json_onto_the_source_is_refused(env, tmp_path, capsys):
    src = write(tmp_path / "src.txt", "a man\n")
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["ckpt"], "--source", src, "--reference", src,
                             "--json", src)
    assert_clean_error(code, out, err, "--json", 1)
    assert "is the --source" in err and src.read_text() == "a man\n"
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", env["ckpt"], "--source", src, "--reference", src,
                             "--json", tmp_path / "r.txt", "--hypotheses", tmp_path / "r.txt")
    assert_clean_error(code, out, err, "are the same file", 1)


def test_average_onto_an_input_is_refused(env, tmp_path, capsys):
    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(env["ckpt"].read_bytes())
    code, out, err = run_cli(capsys, "average", ckpt, env["ckpt"], "--output", ckpt)
    assert_clean_error(code, out, err, "is the checkpoint", 1)


def test_failed_write_leaves_the_old_output_and_no_temp_file(env, tmp_path, capsys, monkeypatch):
    """A full disk in the middle: the earlier file stays as it was, nothing half-written beside it."""
    from translator.inference import streaming

    src = write(tmp_path / "in.txt", "\n".join(tiny_sentences(40, seed=5)) + "\n")
    keep = write(tmp_path / "out.txt", "precious\n")
    written = []
    original = streaming.LineSink.write

    def full_disk(self, text):
        if written:
            raise ValueError(f"cannot write {self.path}: No space left on device")
        written.append(text)
        original(self, text)

    monkeypatch.setattr(streaming.LineSink, "write", full_disk)
    code, out, err = _translate(capsys, env, src, "--output", keep, "--batch_size", "2")
    assert_clean_error(code, out, err, "No space left on device", 1)
    assert keep.read_text() == "precious\n" and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_interrupted_translate_leaves_no_partial_output(env, tmp_path, signame):
    """Interrupted after some chunks are written: one line on stderr, no traceback, no output file at all."""
    import signal

    src = write(tmp_path / "in.txt", "\n".join(tiny_sentences(20_000, seed=6)) + "\n")
    out = tmp_path / "out.txt"
    proc = subprocess.Popen([sys.executable, "-m", "translator", "translate", "--checkpoint", str(env["ckpt"]),
                             "--input", str(src), "--output", str(out), "--decode.method", "greedy",
                             "--batch_size", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            # as from a terminal: a suite started in the background (`cmd &`) ignores SIGINT, and
                            # a process that starts with SIGINT ignored keeps ignoring it (POSIX; Python too)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 900
        while not any(p.stat().st_size > 0 for p in tmp_path.iterdir() if p.name != "in.txt"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    err = err.decode()
    assert proc.returncode == 128 + getattr(signal, signame), err
    assert "Traceback" not in err and f"stopped by {signame}" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


# ---- lines that never end (issue 35) ------------------------------------------------------------------
class _EndlessLine(io.RawIOBase):
    """`size` bytes of one line, then "\\n" and "ok\\n"; records the largest single read asked of it."""

    def __init__(self, size: int):
        self.left, self.tail, self.largest = size, b"\nok\n", 0

    def readable(self):
        return True

    def readinto(self, buffer):
        self.largest = max(self.largest, len(buffer))
        n = min(len(buffer), self.left) if self.left else min(len(buffer), len(self.tail))
        if self.left:
            buffer[:n] = b"\xc3\xa9" * (n // 2) + b"\xc3"[: n % 2]  # "é"s, cut anywhere
            self.left -= n
        else:
            buffer[:n] = self.tail[:n]
            self.tail = self.tail[n:]
        return n


def test_a_long_line_is_cut_while_it_is_read(caplog):
    """A 50 MB line is cut at the limit (a whole character) and the rest skipped in bounded reads."""
    from translator.data.readers import iter_text_lines

    stream = io.BufferedReader(_EndlessLine(50_000_000), buffer_size=1 << 16)
    lines = list(iter_text_lines(stream, "endless.txt", limit=1001))
    assert [len(x) for x in lines] == [500, 2] and lines[1] == "ok"
    assert "endless.txt:1: line longer than 1,001 bytes: cut there" in caplog.text
    assert stream.raw.largest <= 1 << 16
    endless = _EndlessLine(1 << 62)  # /dev/zero: the cut line comes at once, nothing waits for its end
    assert len(next(iter_text_lines(io.BufferedReader(endless), "zero", limit=1001))) == 500
    assert endless.left > (1 << 62) - (1 << 20)


def test_translate_cuts_a_long_line_with_the_truncation_warning(env, tmp_path, capsys, caplog, monkeypatch):
    from translator.data import readers

    monkeypatch.setattr(readers.iter_text_lines, "__defaults__", (10_000,))  # MAX_LINE_BYTES, smaller
    src = write(tmp_path / "in.txt", ("two kids play " * 5_000) + "\nthe dog\n")
    code, out, err = _translate(capsys, env, src)
    assert code == 0 and out.count("\n") == 2, err
    assert "in.txt:1: line longer than 10,000 bytes: cut there" in caplog.text
    tokens = re.search(r"input 1 has (\d+) tokens; truncated to the model's limit", caplog.text)
    assert tokens and int(tokens[1]) < 3_000  # of 10,000 bytes (the whole 70,000-byte line gives 15,000)


# ---- silent wrong data (issue 35) ---------------------------------------------------------------------
def test_utf16_without_bom_is_refused(env, tmp_path, capsys):
    src = write(tmp_path / "in.txt", "a man runs\nthe dog\n".encode("utf-16-le"))
    code, out, err = _translate(capsys, env, src)
    assert_clean_error(code, out, err, "in.txt:1: invalid UTF-8: the file looks like UTF-16LE text (without", 1)


def test_tsv_with_a_tab_inside_a_field_names_the_line(tmp_path):
    from translator.data.readers import read_tsv

    path = write(tmp_path / "fra.txt", "Go.\tVa !\nHello\tworld.\tBonjour le monde.\nRun!\tCours !\tCC-BY 2.0 (France)\n")
    with pytest.raises(ValueError, match=r"fra.txt:2: expected 2 tab-separated fields .* found 3 and a third"):
        read_tsv(path)
    path.write_text("Go.\tVa !\nRun!\tCours !\tCC-BY 2.0 (France) Attribution: tatoeba.org\n")
    assert read_tsv(path) == [("Go.", "Va !"), ("Run!", "Cours !")]


def test_dialogues_without_turn_markers_are_reported(tmp_path, caplog):
    from translator.data.readers import read_dailydialog

    path = write(tmp_path / "dialogues_train.txt", "hello there\nhow are you ?\n")
    with pytest.raises(ValueError, match="no line has the __eou__ turn marker"):
        read_dailydialog(path)
    path.write_text("hi __eou__ hello __eou__\njust text\n")
    assert read_dailydialog(path, context_turns=1) == [("hi", "hello")]
    assert "1 of 2 lines have no __eou__ turn marker (line 2)" in caplog.text


def test_vocab_size_larger_than_the_corpus_gives_is_said(env, tmp_path, caplog):
    from translator.training.datamodule import Seq2SeqDataModule

    dm = Seq2SeqDataModule("multi30k", data_dir=str(env["data"]), cache_dir=str(tmp_path / "cache"),
                           vocab_size=100_000)
    built = dm.tokenizer.src_vocab_size
    assert built < 100_000
    assert f"--data.vocab_size 100000 is more than this corpus gives: SentencePiece made {built:,} pieces" in caplog.text


# ---- misleading messages (issue 35) -------------------------------------------------------------------
def test_max_tokens_below_one_pair_is_refused(env, tmp_path):
    from translator.training.datamodule import Seq2SeqDataModule

    dm = Seq2SeqDataModule("multi30k", data_dir=str(env["data"]), cache_dir=str(tmp_path / "cache"),
                           vocab_size=300, max_tokens=1)
    with pytest.raises(ValueError, match=r"--data.max_tokens 1 is less than one pair: .* raise --data.max_tokens"):
        dm.setup("fit")


def test_an_orphaned_token_store_folder_is_removed(env, tmp_path):
    """A build killed with -9 leaves its temporary folder; the next build in the cache removes it."""
    from translator.data.token_store import TMP_PREFIX
    from translator.training.datamodule import Seq2SeqDataModule

    dead = subprocess.Popen(["true"])
    dead.wait()
    cache = tmp_path / "cache"
    dm = Seq2SeqDataModule("multi30k", data_dir=str(env["data"]), cache_dir=str(cache), vocab_size=300)
    orphan = cache / "tokens" / f"{TMP_PREFIX}{socket.gethostname()}-{dead.pid}-x1y2"  # token_store.store_path
    orphan.mkdir(parents=True)
    (orphan / "src.tokens").write_bytes(b"\0" * 64)
    dm.setup("fit")
    assert not orphan.exists()


def test_output_that_is_redirected_stdin_is_refused(env, tmp_path, capsys):
    """`translate --output s.txt < s.txt`: the file on stdin counts as an input."""
    src = write(tmp_path / "s.txt", "a man\n")
    saved = os.dup(0)
    try:
        with open(src, "rb") as f:
            os.dup2(f.fileno(), 0)
        code, out, err = run_cli(capsys, "translate", "--checkpoint", env["ckpt"], "--output", src)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert_clean_error(code, out, err, "is the file redirected to stdin", 1)
    assert src.read_text() == "a man\n"


# ---- export --force (issue 35) ------------------------------------------------------------------------
def test_export_force_only_ever_replaces_an_earlier_export(env, tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    project = tmp_path / "proj"
    project.mkdir()
    ckpt = project / "model.ckpt"
    ckpt.write_bytes(env["ckpt"].read_bytes())
    notes = write(project / "notes.txt", "mine\n")
    code, out, err = run_cli(capsys, "export", ckpt, "--output", project, "--force", "true")
    assert_clean_error(code, out, err, "holds the checkpoint", 1)
    assert ckpt.read_bytes() == env["ckpt"].read_bytes() and notes.read_text() == "mine\n"
    code, out, err = run_cli(capsys, "export", env["ckpt"], "--output", project, "--force", "true")
    assert_clean_error(code, out, err, "not an earlier export", 1)
    assert "pass --force true" not in err and notes.read_text() == "mine\n"

    exported = tmp_path / "exported"
    assert run_cli(capsys, "export", env["ckpt"], "--output", exported, "--quantization", "float32")[0] == 0
    code, out, err = run_cli(capsys, "export", env["ckpt"], "--output", exported)
    assert_clean_error(code, out, err, "holds an earlier export; pass --force true", 1)
    code, out, err = run_cli(capsys, "export", env["ckpt"], "--output", exported, "--force", "true")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "proj"]  # no temporary folder left
