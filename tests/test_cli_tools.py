"""`translator translate` and `translator evaluate` through the real CLI entry on a tiny checkpoint.

Line alignment for awkward input, n-best format, stdin -> stdout in a subprocess, BLEU equal to
sacreBLEU's on `translate` output, JSON + PNG reports, and one clear message per user error.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from helpers import make_tiny_checkpoint, run_cli, tiny_sentences, write_multi30k_like
from translator.evaluation import plots

ROOT = Path(__file__).resolve().parents[1]
AWKWARD = [
    "a man runs in park",
    "",
    "   \t  ",
    " ".join(["two kids play with red ball"] * 400),  # ~11,000 characters: truncated, not dropped
    "😀🎉😀",
    "\x01\x02\x07",
    "dog\x0bred\x0c ball\x1c hat\x85 on\u2028street\rnow",  # breaks for str.splitlines, not for us
    "the dog",
    "",
]


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory):
    """Two tiny de->en checkpoints (the second a renamed copy: enough for a two-label comparison)."""
    root = tmp_path_factory.mktemp("ckpt")
    first = make_tiny_checkpoint(root / "tiny.ckpt", kind="lstm", steps=30)
    second = root / "tiny2.ckpt"
    shutil.copy(first, second)
    return first, second


def write(path, lines, final_newline=True):
    path.write_bytes(("\n".join(lines) + ("\n" if final_newline else "")).encode("utf-8"))
    return path


def test_translate_keeps_one_line_per_input_line(ckpts, tmp_path, capsys):
    src = write(tmp_path / "in.txt", AWKWARD)
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", ckpts[0], "--input", src, "--decoder", "greedy")
    assert code == 0
    lines = out.split("\n")
    assert lines.pop() == "" and len(lines) == len(AWKWARD)
    for source, line in zip(AWKWARD, lines):
        if not source.strip():
            assert line == ""
    assert lines[0] and lines[3]  # real and over-long inputs get a translation

    out_file = tmp_path / "sub" / "out.txt"
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", ckpts[0], "--input", src, "--output", out_file,
                           "--decoder", "greedy")
    assert code == 0 and out == ""
    assert out_file.read_text(encoding="utf-8").split("\n") == [*lines, ""]


def test_nbest_format_and_progress_bar(ckpts, tmp_path, capsys, monkeypatch):
    src = write(tmp_path / "in.txt", AWKWARD[:3] + AWKWARD[7:])
    code, one_best, _ = run_cli(capsys, "translate", "--checkpoint", ckpts[0], "--input", src)
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", ckpts[0], "--input", src, "--nbest", "3")
    assert code == 0
    rows = out.split("\n")[:-1]
    assert len(rows) == 5 and rows[1] == rows[2] == rows[4] == ""  # empty inputs stay empty lines
    for row, best in zip(rows, one_best.split("\n")):
        if row:
            fields = row.split("\t")
            assert len(fields) == 6  # text<TAB>score, 3 times
            scores = [float(s) for s in fields[1::2]]
            assert scores == sorted(scores, reverse=True)
            assert fields[0] == best  # `cut -f1` is the 1-best output

    many = write(tmp_path / "many.txt", tiny_sentences(120, seed=5))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # the bar shows on a terminal
    code, out, err = run_cli(capsys, "translate", "--checkpoint", ckpts[0], "--input", many,
                             "--output", tmp_path / "many.out", "--decoder", "greedy")
    assert code == 0 and "120/120" in err  # tqdm's bar on stderr whenever it is a terminal
    assert len((tmp_path / "many.out").read_text(encoding="utf-8").split("\n")) == 121


def test_stdin_to_stdout_subprocess(ckpts, tmp_path):
    lines_in = AWKWARD[:3] + AWKWARD[4:8]
    data = "\n".join(lines_in).encode("utf-8")  # and no final newline
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "ascii"}  # output must not use the locale
    env.pop("TRANSLATOR_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "translator", "translate", "--checkpoint", str(ckpts[0]),
                           "--decoder", "greedy"], input=data, capture_output=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode("utf-8").split("\n")
    assert lines.pop() == "" and len(lines) == len(lines_in)
    assert lines[1] == lines[2] == "" and lines[0] and lines[-1]


def test_evaluate_bleu_equals_sacrebleu_on_translate_output(ckpts, tmp_path, capsys):
    src = write(tmp_path / "src.txt", tiny_sentences(12, seed=9))
    settings = ["--decoder", "greedy", "--max_len_a", "2", "--batch_size", "5"]  # beam: the tiny model says ""
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", ckpts[0], "--input", src, *settings)
    hyps = out.split("\n")[:-1]
    # References that share n-grams with the output, so (char) BLEU is neither 0 nor 100.
    refs = [h if i % 3 == 0 else f"{h} the dog" for i, h in enumerate(hyps)]
    ref = write(tmp_path / "ref.txt", refs)
    for tokenize in ("13a", "char"):  # the tiny model's replies are too short for word 4-grams
        code, out, _ = run_cli(capsys, "evaluate", "--checkpoint", ckpts[0], "--source", src, "--reference", ref,
                               *settings, "--tokenize", tokenize, "--json", tmp_path / "r.json")
        assert code == 0
        report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
        expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize)
        assert report["bleu"] == pytest.approx(expected.score, abs=1e-9)
        assert report["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
        assert f"tok:{tokenize}" in report["signature"]["bleu"] and f"{expected.score:.2f}" in out
    assert 0 < expected.score < 100
    assert report["decoding"]["method"] == "greedy" and report["decoding"]["max_len_a"] == 2


def test_evaluate_dataset_writes_json_and_plot(ckpts, tmp_path, capsys):
    data = write_multi30k_like(tmp_path / "data", n_train=5, n_val=5, n_test=20, transform=str)
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", ckpts[0], "--dataset", "multi30k",
                             "--data_dir", data, "--decoder", "greedy", "--max_sentences", 15,
                             "--json", tmp_path / "out" / "report.json", "--plot", tmp_path / "out" / "bleu.png")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert {"bleu", "chrf", "signature", "sentences_per_second", "tokens_per_second", "decoding",
            "bleu_by_length"} <= report.keys()
    assert report["n_sentences"] == 15 and report["dataset"] == "multi30k" and report["split"] == "test"
    assert (report["src_lang"], report["tgt_lang"], report["tokenize"]) == ("de", "en", "13a")
    assert report["sentences_per_second"] > 0 and report["tokens_per_second"] > 0
    assert "tok:13a" in report["signature"]["bleu"] and report["decoding"]["method"] == "greedy"
    assert sum(b["n"] for b in report["bleu_by_length"]) == 15 and report["chat"] is False
    assert (tmp_path / "out" / "bleu.png").read_bytes().startswith(b"\x89PNG")
    assert "BLEU by source length" in out


def test_two_checkpoints_one_plot_two_labels(ckpts, tmp_path, capsys, monkeypatch):
    calls = []
    real_plot = plots.plot_bleu_by_length
    monkeypatch.setattr(plots, "plot_bleu_by_length", lambda results, path, **kw: (
        calls.append(list(results)), real_plot(results, path, **kw))[1])
    src = write(tmp_path / "src.txt", tiny_sentences(6, seed=4))
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", ckpts[0], "--checkpoint", ckpts[1],
                             "--source", src, "--reference", src, "--decoder", "greedy",
                             "--json", tmp_path / "r.json", "--plot", tmp_path / "p.png")
    assert code == 0, err
    assert calls == [["tiny", "tiny2"]] and (tmp_path / "p.png").stat().st_size > 1000
    reports = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [r["label"] for r in reports] == ["tiny", "tiny2"]
    assert reports[0]["bleu"] == reports[1]["bleu"]  # the same weights score the same
    assert "tiny2" in out


def bad_cases(tmp_path, ckpt):
    """(argv, a fragment the one error line must contain) for each user error."""
    src = write(tmp_path / "src.txt", ["a man", "the dog", "red ball"])
    short = write(tmp_path / "short.txt", ["a man"])
    empty = write(tmp_path / "empty.txt", [], final_newline=False)
    return [
        (["translate", "--checkpoint", ckpt, "--input", tmp_path / "missing.txt"], "missing.txt: no such file"),
        (["translate", "--checkpoint", ckpt, "--input", src, "--decode.method", "topk"], "Given value: topk"),
        (["translate", "--checkpoint", tmp_path / "none.ckpt", "--input", src], "checkpoint not found"),
        (["translate", "--checkpoint", ckpt, "--input", tmp_path], "cannot read"),
        (["evaluate", "--checkpoint", ckpt, "--source", tmp_path / "missing.txt", "--reference", src],
         "missing.txt: no such file"),
        (["evaluate", "--checkpoint", ckpt, "--source", src, "--reference", short],
         "src.txt has 3 lines but"),
        (["evaluate", "--checkpoint", ckpt, "--source", empty, "--reference", empty], "empty test set"),
        (["evaluate", "--checkpoint", ckpt, "--source", src, "--reference", src, "--decode.method", "nucleus"],
         "Given value: nucleus"),
        (["evaluate", "--checkpoint", ckpt, "--source", src, "--reference", src, "--batch_size", "many"],
         'Parser key "batch_size"'),
        (["translate", "--input", src], "give one checkpoint (--checkpoint CKPT) or an ensemble"),
        (["evaluate", "--checkpoint", ckpt], "give --dataset NAME"),
        (["evaluate", "--checkpoint", ckpt, "--dataset", "multi30k", "--source", src, "--reference", src],
         "not both"),
        (["evaluate", "--checkpoint", ckpt, "--source", src], "--reference is missing"),
        (["evaluate", "--checkpoint", ckpt, "--source", src, "--reference", src, "--src_lang", "fr"],
         "translates de->en, but fr->en"),
        (["translate", "--checkpoint", ckpt, "--input", src, "--precision", "fp8"], "unknown precision 'fp8'"),
        (["evaluate", "--checkpoint", ckpt, "--source", src, "--reference", src, "--precision", "half"],
         "unknown precision 'half'"),
    ]


def test_bad_input_gives_one_clear_message(ckpts, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TRANSLATOR_DEBUG", raising=False)
    for argv, fragment in bad_cases(tmp_path, ckpts[0]):
        code, out, err = run_cli(capsys, *argv)
        assert code != 0, argv
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith(f"translator {argv[0]}: error: ") and fragment in err, (argv, err)
        assert out == ""


def test_chat_checkpoint_gets_distinct_and_korean_tokenizer(ckpts, tmp_path, capsys):
    import torch

    from translator.training.system import BUNDLE_KEY

    checkpoint = torch.load(ckpts[0], weights_only=True)  # same weights, relabelled as a Korean chat model
    checkpoint[BUNDLE_KEY]["data"] = {"dataset": "chatbot-ko", "src_lang": "ko", "tgt_lang": "ko"}
    torch.save(checkpoint, tmp_path / "chat.ckpt")
    src = write(tmp_path / "q.txt", ["안녕하세요", "오늘 날씨 어때요?", "a man"])
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", tmp_path / "chat.ckpt", "--source", src,
                             "--reference", src, "--decoder", "greedy", "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["chat"] is True and report["tokenize"] == "char" and report["tgt_lang"] == "ko"
    assert {"distinct_1", "distinct_2", "top_reply_share"} <= report.keys() and "distinct_1" in out


def test_bf16_translation_keeps_line_alignment(tmp_path, capsys):
    ckpt = make_tiny_checkpoint(tmp_path / "copy.ckpt", kind="transformer", steps=150)  # learns to copy
    src = write(tmp_path / "in.txt", AWKWARD)
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", ckpt, "--input", src, "--precision", "bf16",
                           "--decoder", "greedy")
    assert code == 0
    lines = out.split("\n")
    assert lines.pop() == "" and len(lines) == len(AWKWARD) and lines[1] == lines[2] == ""
    # bf16 autocast still decodes the copy task (up to a near-tie at the last word in this tiny model)
    assert lines[0].startswith("a man runs in") and lines[7] == "the dog"
    code, out, _ = run_cli(capsys, "evaluate", "--checkpoint", ckpt, "--source", src, "--reference", src,
                           "--precision", "bf16", "--json", tmp_path / "r.json")
    assert code == 0 and json.loads((tmp_path / "r.json").read_text())["precision"] == "bf16"


def test_average_is_the_mean_of_the_weights(tmp_path, capsys):
    import torch

    from translator.artifacts.checkpoint import load_bundle

    a = make_tiny_checkpoint(tmp_path / "a.ckpt", kind="transformer", steps=3)
    b = make_tiny_checkpoint(tmp_path / "b.ckpt", kind="transformer", steps=8)
    out = tmp_path / "avg" / "avg.ckpt"
    code, stdout, _ = run_cli(capsys, "average", a, b, "--output", out)
    assert code == 0 and "averaged 2 checkpoints" in stdout
    wa, wb = load_bundle(a).model.state_dict(), load_bundle(b).model.state_dict()
    averaged = load_bundle(out)  # a loadable, self-contained checkpoint
    for key, value in averaged.model.state_dict().items():
        torch.testing.assert_close(value, (wa[key] + wb[key]) / 2)
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)  # the two inputs really differ


def test_average_refuses_checkpoints_of_different_models(tmp_path, capsys):
    a = make_tiny_checkpoint(tmp_path / "a.ckpt", kind="transformer", steps=2)
    b = make_tiny_checkpoint(tmp_path / "b.ckpt", kind="lstm", steps=2)
    code, _, err = run_cli(capsys, "average", a, b, "--output", tmp_path / "avg.ckpt")
    assert code == 1 and "b.ckpt has a different model config" in err and err.count("\n") == 1
    assert not (tmp_path / "avg.ckpt").exists()
    code, _, err = run_cli(capsys, "average", tmp_path / "missing.ckpt", a, "-o", tmp_path / "avg.ckpt")
    assert code == 1 and "checkpoint not found" in err and "missing.ckpt" in err


def test_usage_lists_every_command_with_its_summary(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    rows = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  ")}
    for name in ("fit", "validate", "test", "translate", "evaluate", "average", "app", "data list",
                 "data download", "data stats"):
        assert name in rows, name
    assert "Average the weights of checkpoints" in rows["average"] and "Download dataset NAME" in rows["data download"]
    code, out, err = run_cli(capsys, "translate", "--help")
    assert code == 0 and "Examples:\n    echo" in out and "--decode.beam_size" in out  # the docstring, lines kept
    code, _, err = run_cli(capsys, "tranlsate")
    assert code == 2 and "unknown command 'tranlsate'" in err


def test_translate_help_loads_neither_lightning_nor_gradio():
    script = ("import sys\nimport translator.inference\nfrom translator.cli import main\n"
              "try:\n    main(['translate', '--help'])\nexcept SystemExit:\n    pass\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning', 'gradio'}))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_list_options_repeat_and_positional_lists_take_many_words():
    from translator import cli

    seen = {}

    def command(files: list[str], *, label: list[str] | str | None = None, size: int = 1) -> None:
        """Collect what was parsed.

        Args:
            files: one or more inputs.
            label: a name per input.
            size: a number.
        """
        seen.update(files=files, label=label, size=size)

    cli._run_function("command", command, ["a.txt", "b.txt", "--label", "x", "--label", "y", "--label+", "z"])
    assert seen == {"files": ["a.txt", "b.txt"], "label": ["x", "y", "z"], "size": 1}
    cli._run_function("command", command, ["a.txt", "--label", "x", "--size", "3"])
    assert seen == {"files": ["a.txt"], "label": "x", "size": 3}


def test_old_flat_decoding_flags_say_which_release_drops_them(capsys):
    from translator.cli import LEGACY_DECODE_FLAGS_REMOVED_IN, _legacy_decode_flags

    assert _legacy_decode_flags(["--decoder", "greedy", "--beam_size=4"]) == ["--decode.method", "greedy",
                                                                             "--decode.beam_size=4"]
    err = capsys.readouterr().err
    assert f"removed in translator {LEGACY_DECODE_FLAGS_REMOVED_IN}" in err and "--beam_size -> --decode.beam_size" in err
