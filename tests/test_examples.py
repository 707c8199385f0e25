"""Every command line the project shows runs: the examples of each `translator COMMAND --help` and of
README.md's ```bash / ```sh blocks, found here by reading them (a new example is covered without
editing this file).

Each example is parsed by the command's own parser (LightningCLI for fit / validate / test, with
--print_config so nothing is built; jsonargparse over the function's signature for the others).
`translate`, `evaluate`, `export` and `average` examples also run, on tiny checkpoints and files made
under the names the example uses (CKPT, in.de, run1/best.ckpt, ...), unless the example names a GPU,
a dataset other than multi30k, or a path it cannot mean literally (`...`, a glob, a shell variable).
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_tiny_checkpoint, tiny_sentences, write_multi30k_like
from translator import cli
from translator.artifacts.checkpoint import BUNDLE_KEY
from translator.inference.confidence import SIGNALS, Calibrator

ROOT = Path(__file__).resolve().parents[1]


# ---- finding the examples ---------------------------------------------------------------------------
def help_examples() -> list[tuple[str, str]]:
    """(where, command line) of every line under "Examples:" in a command's docstring that runs `translator`."""
    found = []
    for name, target in cli._commands():
        doc = cli._docstring(target)
        section = doc.split("Examples:", 1)[1] if "Examples:" in doc else ""
        for line in section.splitlines()[1:]:
            if not line.strip():
                break
            if "translator " in line:
                found.append((f"translator {name} --help", line.strip()))
    return found


def readme_examples(path: Path = ROOT / "README.md") -> list[tuple[str, str]]:
    """(where, command line) of every command in README's ```bash / ```sh blocks that runs `translator`;
    continuation lines are joined, comments dropped, loops split into their commands."""
    found, block, start = [], None, 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if block is None and re.match(r"^\s*```(bash|sh|shell|console)\s*$", line):
            block, start = [], number
        elif block is not None and line.strip().startswith("```"):
            found += [(f"README.md:{start}", c) for c in _commands_in("\n".join(block))]
            block = None
        elif block is not None:
            block.append(line)
    return found


def _commands_in(script: str) -> list[str]:
    script = script.replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, ";"]:  # a pipeline stays whole: `echo TEXT | translator ...` is stdin
            if word in (";", "&&", "||", "do", "done", "then"):
                if current:
                    commands.append(shlex.join(current))
                current = []
            else:
                current.append(word)
    return [c for c in commands if "translator" in shlex.split(c)]


def translator_args(command: str) -> list[str]:
    """The words after `translator` (or `-m translator`), shell variables given a value."""
    words = [re.sub(r"\$\{?\w+\}?", "1", w) for w in shlex.split(command, comments=True)]
    return words[words.index("translator") + 1:]


def piped_stdin(command: str) -> str:
    """What `echo TEXT | translator ...` sends to stdin ("" without such a pipe)."""
    words = shlex.split(command, comments=True)
    return f"{words[1]}\n" if words[0] == "echo" and words[2] == "|" else ""


EXAMPLES = help_examples() + readme_examples()


def test_examples_are_found():
    """The discovery itself: each source gives examples (an empty list would make the tests below vacuous)."""
    wheres = {where.split(":")[0] for where, _ in EXAMPLES}
    assert "README.md" in wheres and "translator translate --help" in wheres and "translator fit --help" in wheres
    assert len(EXAMPLES) >= 40
    assert "translator lab softmax --help" in wheres and "translator export --help" in wheres


def test_readme_reader_splits_pipes_loops_and_continuations(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text('text\n```bash\necho "x y" | translator translate --checkpoint CKPT   # note\n'
                      'for s in 1 2; do\n  translator fit --config c.yaml \\\n    --seed_everything $s\ndone\n'
                      'ls  # translator in a comment only\n```\n```python\ntranslator = 1\n```\n')
    found = readme_examples(readme)
    assert [c for _, c in found] == ["echo 'x y' '|' translator translate --checkpoint CKPT",
                                     "translator fit --config c.yaml --seed_everything '$s'"]
    assert {w for w, _ in found} == {"README.md:2"} and piped_stdin(found[0][1]) == "x y\n"
    assert translator_args(found[1][1]) == ["fit", "--config", "c.yaml", "--seed_everything", "1"]


# ---- parsing ----------------------------------------------------------------------------------------
def _split(args: list[str]) -> tuple[str, object, list[str]]:
    """(command name, COMMANDS entry, its arguments) as `cli.main` walks the table."""
    entry, words = cli.COMMANDS, []
    while isinstance(entry, dict) and args and args[0] in entry and args[0] != "_help":
        words.append(args[0])
        entry, args = entry[args[0]], args[1:]
    return " ".join(words), entry, args


def parse(args: list[str], capsys) -> None:
    """Parse one example's arguments with its command's own parser; fail with the parser's message."""
    name, entry, rest = _split(args)
    if isinstance(entry, dict) or "--help" in rest or "-h" in rest:  # a group's list or a --help: it prints
        code = _exit_code(lambda: cli.main(args))
        out, err = capsys.readouterr()
        assert code == 0 and "usage:" in out, err
        return
    if name in cli.LIGHTNING_COMMANDS:
        code = _exit_code(lambda: cli._lightning_cli([name, *rest, "--print_config"]))
        out, err = capsys.readouterr()
        assert code == 0 and "trainer:" in out, err[-2000:]
        return
    cli.parse_function_args(name, cli._load(entry), list(rest))


def _exit_code(run) -> int:
    try:
        run()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


@pytest.mark.parametrize("where, command", EXAMPLES, ids=[f"{w}: {c}"[:140] for w, c in EXAMPLES])
def test_example_parses(where, command, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # config paths in the examples are relative to the repository
    parse(translator_args(command), capsys)


# ---- running the cheap ones on tiny checkpoints -----------------------------------------------------
RUNS = ("translate", "evaluate", "export", "average", "attach")


def runnable(args: list[str]) -> bool:
    name, _, rest = _split(args)
    if name not in RUNS or any(w in ("-h", "--help") for w in rest):
        return False
    if any(mark in word for word in rest for mark in ("...", "*", "{", "$")):
        return False
    options = dict(zip(rest, rest[1:]))
    if options.get("--device", "cpu") != "cpu" or options.get("--dataset", "multi30k") != "multi30k":
        return False
    return name != "export" or _has_ctranslate2()


def _has_ctranslate2() -> bool:
    with contextlib.suppress(ImportError):
        import ctranslate2  # noqa: F401

        return True
    return False


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    return {"transformer": make_tiny_checkpoint(root / "transformer.ckpt", steps=20),
            "lstm": make_tiny_checkpoint(root / "lstm.ckpt", kind="lstm", steps=20),
            "attention": make_tiny_checkpoint(root / "attention.ckpt", kind="attention", steps=20),
            "chat": make_tiny_checkpoint(root / "chat.ckpt", steps=20, dataset="dailydialog", src_lang="en",
                                         tgt_lang="en", task="chat"),
            "data": write_multi30k_like(root / "data", n_train=40, n_val=6, n_test=6)}


def _materialize(args: list[str], tiny: dict[str, Path], folder: Path) -> None:
    """Make the files the example names, in `folder`: checkpoints (of the family the name says), inputs."""
    name, _, rest = _split(args)
    for flag, value in zip(["", *rest], rest):
        path = folder / value
        if path.exists() or value.startswith("-"):
            continue
        if value in ("CKPT", "CHAT_CKPT", "BACKWARD_CKPT") or value.endswith(".ckpt"):
            family = next((f for f in ("lstm", "attention") if f in value.lower()), "transformer")
            backward = flag == "--backward" or "backward" in value.lower()
            source = tiny["chat"] if backward or "chat" in value.lower() else tiny[family]
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, path)
            if backward:  # a chat model's backward model: the chat model's tokenizer, trained on reversed pairs
                checkpoint = torch.load(path, weights_only=True)
                checkpoint[BUNDLE_KEY]["data"]["reverse"] = True
                torch.save(checkpoint, path)
            if "calibrated" in value.lower():  # a checkpoint `translator calibrate` wrote: any fixed calibrator
                checkpoint = torch.load(path, weights_only=True)
                n = len(SIGNALS)
                checkpoint[BUNDLE_KEY]["calibrator"] = Calibrator(list(SIGNALS), [0.0] * n, [1.0] * n, [0.1] * n,
                                                                  0.0).to_dict()
                torch.save(checkpoint, path)
        elif flag in ("--input", "--source", "--reference"):
            path.write_text("\n".join(tiny_sentences(4, seed=len(value))) + "\n", encoding="utf-8")
        elif flag == "--checkpoint" and value.startswith("exported/") and name != "export":
            from translator.artifacts.export import export_checkpoint

            export_checkpoint(tiny["transformer"], path, "float32")


@pytest.mark.parametrize("where, command", [(w, c) for w, c in EXAMPLES if runnable(translator_args(c))],
                         ids=[f"{w}: {c}"[:140] for w, c in EXAMPLES if runnable(translator_args(c))])
def test_example_runs_on_a_tiny_checkpoint(where, command, tiny, tmp_path, capsys, monkeypatch):
    args = translator_args(command)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRANSLATOR_DATA_DIR", str(tiny["data"]))
    _materialize(args, tiny, tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped_stdin(command).encode())))
    code = _exit_code(lambda: cli.main(args))
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err, err[-3000:]
    if _split(args)[0] == "translate" and "--output" not in args:
        assert out.endswith("\n")
