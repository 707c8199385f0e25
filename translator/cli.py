"""`translator` entry point: one command table, `COMMANDS`, from command name to the function that runs it.

`translator --help` lists the table (each command's summary is its function's first docstring line);
`translator COMMAND --help` shows that function's docstring, examples included, and one option per
parameter. fit / validate / test are LightningCLI's; the other commands are parsed from their
function's signature by jsonargparse. Only the module of the command that runs is imported, so
`translator translate --help` loads neither Lightning nor Gradio. Every command is a function a user
can import and call.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import inspect
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

from translator.decoding import DecodeConfig, DecodeOptions
from translator.tasks import TRANSLATION, Task

#: Command name -> "module:function" (imported when its command runs); a dict is a group of subcommands,
#: its "_help" the group's summary.
COMMANDS: dict[str, Any] = {
    "fit": "translator.cli:fit",
    "validate": "translator.cli:validate",
    "test": "translator.cli:test",
    "translate": "translator.cli:translate",
    "evaluate": "translator.evaluation.command:evaluate",
    "average": "translator.cli:average",
    "attach": "translator.cli:attach",
    "calibrate": "translator.evaluation.calibrate:calibrate",
    "export": "translator.artifacts.export:export_command",
    "app": "translator.serve.app:launch",
    "lab": {
        "_help": "The learning lab: one idea of the RNN -> LSTM -> attention -> Transformer story per command, "
                 "each writing a PNG and its numbers as JSON beside it.",
        "params": "translator.lab.params:command",
        "gradients": "translator.lab.gradients:command",
        "gates": "translator.lab.gates:command",
        "exposure": "translator.lab.exposure:command",
        "positions": "translator.lab.positions:command",
        "attention": "translator.lab.attention:command",
        "bottleneck": "translator.lab.bottleneck:command",
        "softmax": "translator.lab.softmax:command",
        "beam": "translator.lab.beam:command",
    },
    "data": {
        "_help": "The dataset registry: list the datasets, download one, batch statistics of one.",
        "list": "translator.data.registry:list_command",
        "download": "translator.data.registry:download_command",
        "stats": "translator.training.datamodule:stats_command",
    },
}
#: Parsed by LightningCLI (handed their arguments as they are), not from their function's signature.
LIGHTNING_COMMANDS = ("fit", "validate", "test")
#: Commands whose required parameters are --options as well (`--checkpoint CKPT`); in the others a
#: required parameter is positional (`translator data download NAME`, `translator average A B --output C`).
OPTIONS_ONLY = ("translate", "evaluate", "lab bottleneck")


def checkpoint_callbacks(task: Task) -> list[dict[str, Any]]:
    """The `trainer.callbacks` default of a run of `task`: one ModelCheckpoint per entry of `task.checkpoints()`."""
    return [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": init_args}
            for init_args in task.checkpoints()]


#: Trainer settings every shipped config shares, set once here; a config file or --trainer.* overrides
#: them, and `translator fit --config C --print_config` shows the result.
TRAINER_DEFAULTS: dict[str, Any] = {
    "use_distributed_sampler": False,  # a correctness rule: the DataModule shards its token-budget batches itself
    "num_sanity_val_steps": 0,
    "gradient_clip_val": 1.0,
    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "checkpoints"}},
    # the checkpoints kept: the dataset's task's (a chat run's best.ckpt is its last epoch; _task_callbacks);
    # a config or --trainer.callbacks that sets callbacks replaces this list
    "callbacks": checkpoint_callbacks(TRANSLATION),
}


# ---- the commands defined here ---------------------------------------------------------------
def fit(args: Sequence[str] = ()) -> None:
    """Train a model (LightningCLI: every --trainer.*, --model.*, --data.* option; --print_config shows all).

    Shared trainer defaults (gradient clipping, checkpoints, CSV logs under checkpoints/) are
    `translator.cli.TRAINER_DEFAULTS`; the config file and the command line override them.

    Examples:
        translator fit --config translator/configs/transformer.yaml
        translator fit --config translator/configs/lstm.yaml --model.model.init_args.cell gru
        translator fit --config translator/configs/transformer.yaml --ckpt_path checkpoints/.../last.ckpt   # resume
        translator fit --config translator/configs/transformer.yaml --print_config
    """
    _lightning_cli(["fit", *args])


def validate(args: Sequence[str] = ()) -> None:
    """Validation loss, perplexity and greedy BLEU of a checkpoint (LightningCLI).

    Examples:
        translator validate --config translator/configs/transformer.yaml --ckpt_path CKPT
    """
    _lightning_cli(["validate", *args])


def test(args: Sequence[str] = ()) -> None:
    """Test-split loss and perplexity of a checkpoint (LightningCLI; `translator evaluate` gives BLEU).

    Examples:
        translator test --config translator/configs/transformer.yaml --ckpt_path CKPT
    """
    _lightning_cli(["test", *args])


def translate(
    checkpoint: str | None = None,
    input: str | None = None,
    output: str | None = None,
    decode: DecodeOptions = DecodeOptions(),
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "fp32",
    ensemble: list[str] | str | None = None,
    backward: str | None = None,
    scores: bool = False,
    min_confidence: float | None = None,
) -> None:
    """Translate one sentence per line from a file (or stdin) to a file (or stdout), in input order.

    Every input line gives exactly one output line; empty and whitespace-only lines stay empty.
    Streaming: to stdout, each chunk of lines is written (and flushed) as soon as it is translated, so
    a line piped alone is answered at once; a terminal gets a prompt per line; memory does not grow
    with the input. An --output file appears whole when the last line is translated (a hidden
    temporary file beside it until then): Ctrl-C or a kill leaves no partial file, and an --output
    that is the input or the checkpoint is refused. A progress bar is shown on stderr whenever stderr is a terminal.
    With --decode.nbest N > 1 each output line is `text1<TAB>score1<TAB>text2<TAB>score2 ...`, best
    first (`cut -f1` gives the 1-best translations; score = the ranking score). A chat checkpoint
    replies to each line with its chat decoding.
    With --scores each line adds, after a tab, the sentence's confidence in [0, 1] (a checkpoint calibrated
    by `translator calibrate`); --min_confidence X adds a last field REVIEW to the lines below X.

    Examples:
        echo "Ein Mann fährt Fahrrad." | translator translate --checkpoint CKPT
        translator translate --checkpoint CKPT --input in.de --output out.en --decode.beam_size 8 --decode.nbest 3
        translator translate --checkpoint CKPT --input in.de --decode.method greedy --precision bf16
        translator translate --ensemble run1/best.ckpt run2/best.ckpt run3/best.ckpt --input in.de
        translator translate --checkpoint CHAT_CKPT --backward BACKWARD_CKPT --input messages.txt
        translator translate --checkpoint CALIBRATED.ckpt --input in.de --scores true --min_confidence 0.5

    Args:
        checkpoint: a .ckpt written by `translator fit`, or a directory written by `translator export` (CTranslate2);
            or give --ensemble instead.
        input: file to read (UTF-8, one sentence per line; a line longer than 1 MiB is cut); stdin when omitted
            or "-".
        output: file to write, whole or not at all; stdout when omitted or "-" (checked before the model loads).
        decode: decoding options over the checkpoint's defaults (translation: beam 5, length penalty 1.0;
            chat: CHAT_DECODING), e.g. --decode.method greedy --decode.nbest 3.
        batch_size: sentences decoded together (files are read 8 batches at a time and sorted by length inside).
        device: cpu, cuda, cuda:1, ...
        precision: fp32, bf16 (autocast: faster on AVX-512 bf16 / AMX CPUs and GPUs; output may differ slightly)
            or int8 (dynamic int8 quantization, CPU). An exported directory computes in its exported type
            under fp32, and in bfloat16 / int8 under bf16 / int8.
        ensemble: several .ckpt files (one tokenizer, any families) that translate together, scoring every
            token by the mean of their log-probabilities; instead of --checkpoint.
        backward: a chat model's backward .ckpt (trained with --data.reverse true on its tokenizer): replies are
            re-ranked by the MMI-bidi score, with --decode.backward_weight beta (default CHAT_BIDI_DECODING's).
        scores: add each line's confidence (probability that its sentence chrF reaches the calibrator's threshold).
        min_confidence: mark the lines whose confidence is below this value with a last field REVIEW (kept, not
            dropped), so a person can review them; implies --scores.
    """
    from translator.inference.command import translate_file

    members = [ensemble] if isinstance(ensemble, str) else ensemble
    translate_file(checkpoint, input, output, decode, device=device, batch_size=batch_size, precision=precision,
                   ensemble=members, backward=backward, scores=scores, min_confidence=min_confidence)


def average(checkpoints: list[str], *, output: str) -> Path:
    """Average the weights of checkpoints of one run into one inference checkpoint.

    Typically the last epochs that `translator fit` keeps as epochNN.ckpt: their mean usually scores
    a little higher than any one of them (`translator.artifacts.checkpoint.average_checkpoints`).

    Examples:
        translator average checkpoints/transformer-multi30k-de-en/version_0/checkpoints/epoch*.ckpt --output average.ckpt

    Args:
        checkpoints: checkpoint files of the same model and tokenizer.
        output: where to write the averaged checkpoint.
    """
    from translator.artifacts.checkpoint import average_checkpoints

    path = average_checkpoints(checkpoints, output)
    print(f"averaged {len(checkpoints)} checkpoints -> {path}")
    return path


def attach(checkpoint: str, backward: str, *, output: str) -> Path:
    """Write one chat checkpoint that carries its backward model (MMI-bidi re-ranking without --backward).

    translate, evaluate and the app then re-rank replies with it as they do with `--backward BACKWARD_CKPT`
    (an explicit --backward still wins). The tokenizer is stored once; the file keeps loading as the chat
    model alone in versions that predate it (`translator.artifacts.checkpoint.with_backward`).

    Examples:
        translator attach chat.ckpt chat-backward.ckpt --output chat-mmi.ckpt

    Args:
        checkpoint: the chat model's .ckpt (message -> reply).
        backward: its backward model's .ckpt (reply -> message; trained with --data.reverse true on its tokenizer).
        output: where to write the combined checkpoint (neither input).
    """
    from translator.inference.translator import attach_backward

    path = attach_backward(checkpoint, backward, output)
    print(f"{checkpoint} + backward model {backward} -> {path}")
    return path


# ---- LightningCLI: fit / validate / test -----------------------------------------------------
def _lightning_cli(args: list[str]) -> None:
    """LightningCLI over Seq2SeqSystem and Seq2SeqDataModule, with TRAINER_DEFAULTS and the data links."""
    from lightning.pytorch.cli import LightningCLI

    from translator.training.datamodule import Seq2SeqDataModule
    from translator.training.system import Seq2SeqSystem

    subcommand_parsers: list[Any] = []

    class TranslatorCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.set_defaults({f"trainer.{key}": value for key, value in TRAINER_DEFAULTS.items()})
            subcommand_parsers.append(parser)
            # Values that come from the data are linked, never typed twice.
            for name in ("src_vocab_size", "tgt_vocab_size", "pad_id"):
                parser.link_arguments(f"data.{name}", f"model.model.init_args.{name}", apply_on="instantiate")

        def parse_arguments(self, parser, args) -> None:
            _task_callbacks(parser, subcommand_parsers, sys.argv[1:] if args is None else args)
            super().parse_arguments(parser, args)

        def _parse_ckpt_path(self) -> None:
            # LightningCLI would replace the model options given with the checkpoint's, silently; instead a
            # bad file is one message and options that cannot change within a run are refused, before any data
            # is read (translator.training.resume; the system lists the options it applies when the checkpoint loads).
            # A fine-tuning run (--model.init_from) takes its parent's model and tokenizer first (translator.training.finetune).
            subcommand = self.config.get("subcommand")
            if subcommand:
                if subcommand == "fit":
                    _init_from(self.config[subcommand], given)
                _check_resume(self.config[subcommand], subcommand)

        def before_instantiate_classes(self) -> None:
            config = self.config.get(self.config.get("subcommand")) or self.config
            _cpu_precision(config)
            _checkpointing_off(config)
            _bleu_monitor_off(config)

    # Each subcommand's help is its function's docstring (subcommand parsers take the main one's formatter).
    help_of: dict[str, Any] = {name: {"description": _description(inspect.getdoc(_load(COMMANDS[name])) or "")}
                               for name in LIGHTNING_COMMANDS}
    help_of.update(prog="translator", formatter_class=_HelpFormatter,
                   exit_on_error=False)  # a bad option or config key: main() prints the one line that matters
    given = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}  # options typed on the command line
    # LightningCLI reads sys.argv itself; handing it `args` as well only makes it warn.
    saved_argv = sys.argv
    sys.argv = ["translator", *args]
    try:
        TranslatorCLI(Seq2SeqSystem, Seq2SeqDataModule, save_config_kwargs={"overwrite": True}, parser_kwargs=help_of)
    finally:
        sys.argv = saved_argv


def _task_callbacks(parser: Any, subcommand_parsers: Sequence[Any], args: Sequence[str]) -> None:
    """Make the default `trainer.callbacks` the checkpoints of the run's task (`Task.checkpoints`): a config or
    --trainer.callbacks replaces them, --trainer.callbacks+ adds to them. The task is the dataset's, known only once
    the arguments are parsed, and --print_config prints during the parse: so a first parse, printing nothing,
    finds the dataset."""
    if "-h" in args or "--help" in args:
        return  # the help shows TRAINER_DEFAULTS
    from translator.data.registry import get_spec
    from translator.tasks import get_task

    # --print_config[=flags] prints and exits during a parse: the probe leaves it out (the real parse keeps it)
    probe = parser.parse_args([a for a in args if a != "--print_config" and not a.startswith("--print_config=")])
    config = probe.get(probe.get("subcommand")) or probe
    try:
        task = get_task(get_spec(str(config.get("data.dataset"))).task)
    except ValueError:  # an unknown dataset: the DataModule says so where it always did
        return
    for subparser in subcommand_parsers:
        subparser.set_defaults({"trainer.callbacks": checkpoint_callbacks(task)})


def _checkpointing_off(config: Any) -> None:
    """--trainer.enable_checkpointing false: drop the ModelCheckpoints (the task's checkpoints add two or three), which
    Lightning would otherwise refuse together with the flag."""
    trainer = config.get("trainer")
    if trainer is None or trainer.get("enable_checkpointing") is not False:
        return
    callbacks = trainer.get("callbacks") or []
    trainer.callbacks = [c for c in callbacks
                         if not str(c.get("class_path", "") if hasattr(c, "get") else type(c).__name__)
                         .endswith("ModelCheckpoint")]


def _bleu_monitor_off(config: Any) -> None:
    """--model.val_bleu false: a checkpoint that keeps the best val/bleu keeps the lowest val/loss instead (no BLEU is
    logged, and Lightning stops at the first validation when a monitored key is missing)."""
    model, trainer = config.get("model"), config.get("trainer")
    if model is None or trainer is None or model.get("val_bleu") is not False:
        return
    for callback in trainer.get("callbacks") or []:
        init_args = callback.get("init_args") if hasattr(callback, "get") else None
        if init_args is not None and init_args.get("monitor") == "val/bleu":
            init_args["monitor"], init_args["mode"] = "val/loss", "min"


def _check_resume(config: Any, subcommand: str) -> None:
    """--ckpt_path: a missing, corrupt or foreign file, or options the run cannot change, as one ValueError."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path or str(ckpt_path) in ("last", "best", "hpc", "registry") or "://" in str(ckpt_path):
        return  # Lightning's own names for checkpoints it finds itself
    from translator.artifacts.checkpoint import read_checkpoint
    from translator.training.resume import check_resume

    plain = config.clone().as_dict() if hasattr(config, "as_dict") else dict(config)
    check_resume(str(ckpt_path), read_checkpoint(ckpt_path), dict(plain.get("model") or {}),
                 dict(plain.get("data") or {}), fitting=subcommand == "fit")


def _init_from(config: Any, given: set[str]) -> None:
    """--model.init_from CKPT: the parent's model configuration and tokenizer, and the fine-tuning optimizer
    defaults for the options not given on the command line (translator.training.finetune); conflicts as one ValueError."""
    model = config.get("model")
    init_from = model.get("init_from") if model is not None else None
    if not init_from:
        return
    from jsonargparse import Namespace

    from translator.training.callbacks import note
    from translator.training.finetune import check_task, finetune_defaults, read_parent, refused_message
    from translator.training.resume import resume_differences

    parent, _ = read_parent(init_from)
    data = config.get("data")
    check_task(init_from, parent, str(data.get("dataset")))
    saved = dict(parent.hparams)
    plain = config.clone().as_dict()
    refused, _ = resume_differences({"model": saved["model"]}, {"model": plain["model"].get("model") or {}}, {}, {})
    if refused:
        raise ValueError(refused_message(str(init_from), refused))
    tokenizer_path = data.get("tokenizer_path")
    if tokenizer_path and Path(tokenizer_path).resolve() != Path(init_from).resolve():
        raise ValueError(f"--data.tokenizer_path {tokenizer_path}: a fine-tuning run keeps the tokenizer of "
                         f"--model.init_from {init_from} (its weights are tied to its ids); drop --data.tokenizer_path")
    model["model"] = Namespace(class_path=saved["model"]["class_path"],
                               init_args=Namespace(**dict(saved["model"].get("init_args") or {})))
    data["tokenizer_path"] = str(init_from)
    parent_data = parent.data
    if data.get("replay") and not data.get("replay_dataset"):  # mixed fine-tuning replays the parent's own data
        data["replay_dataset"] = parent_data.get("dataset")
        data["replay_src_lang"] = data.get("replay_src_lang") or parent_data.get("src_lang")
        data["replay_tgt_lang"] = data.get("replay_tgt_lang") or parent_data.get("tgt_lang")
    defaults = finetune_defaults(saved, {flag.removeprefix("--model.") for flag in given})
    for key, value in defaults.items():
        model[key] = value
    chosen = ", ".join(f"--model.{key} {model.get(key)}" for key in ("lr", "warmup_steps", "lr_schedule"))
    note(f"fine-tuning from {init_from}: its model and tokenizer, a new optimizer and schedule ({chosen})")


def _cpu_precision(config: Any) -> None:
    """bf16 on a CPU that only emulates it (AVX2) runs ~40x slower than float32: train in float32 there.

    A float32 run on the CPU (so fallen back, or asked for) gets its own malloc thresholds
    (cpu_fastpaths.FP32_MMAP_THRESHOLD); a bf16 run on the CPU a small oneDNN primitive cache
    (cpu_fastpaths.BF16_PRIMITIVE_CACHE)."""
    import torch

    from translator import runtime

    trainer = config.get("trainer") if hasattr(config, "get") else None
    precision = str(trainer.get("precision") or "") if trainer is not None else ""
    accelerator = str(trainer.get("accelerator") or "auto") if trainer is not None else "auto"
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu:
        runtime.limit_primitive_cache()  # before the probe's bf16 products: oneDNN reads its capacity once
        if not runtime.cpu_bf16_is_fast():
            print(f"translator: note: this CPU has no native bf16 (measured slower than float32), so "
                  f"--trainer.precision {precision} becomes 32-true", file=sys.stderr)
            trainer["precision"] = precision = "32-true"
    if on_cpu and not precision.startswith(("bf16", "16")):  # "", "32", "32-true", "64-true": full-width floats
        runtime.tune_malloc(runtime.FP32_MMAP_THRESHOLD, runtime.FP32_TRIM_THRESHOLD)


# ---- function commands: parsed from the signature by jsonargparse ------------------------------
#: Decoding flags from before `--decode.*` (each DecodeConfig field as --NAME, and --decoder for the
#: method): still accepted by translate and evaluate, with a deprecation note, until this release.
#: Generated, not typed again.
LEGACY_DECODE_FLAGS_REMOVED_IN = "0.2.0"
LEGACY_DECODE_FLAGS = {"--decoder": "--decode.method",
                       **{f"--{f.name}": f"--decode.{f.name}" for f in dataclasses.fields(DecodeConfig)}}


def _legacy_decode_flags(args: list[str]) -> list[str]:
    """Old flat decoding flags (--beam_size 5) as their --decode.* spelling, with one warning."""
    out, renamed = [], []
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag in LEGACY_DECODE_FLAGS:
            renamed.append(flag)
            arg = LEGACY_DECODE_FLAGS[flag] + eq + value
        out.append(arg)
    if renamed:
        spelled = ", ".join(f"{f} -> {LEGACY_DECODE_FLAGS[f]}" for f in dict.fromkeys(renamed))
        print(f"translator: note: deprecated decoding flag(s), removed in translator {LEGACY_DECODE_FLAGS_REMOVED_IN}: "
              f"{spelled}", file=sys.stderr)
    return out


def _repeated_list_flags(args: list[str], list_flags: set[str]) -> list[str]:
    """`--checkpoint A --checkpoint B` for a list option means [A, B] (compat shim).

    jsonargparse has no repeatable flag: a second `--flag X` replaces the first, and its own spelling
    for adding to a list is `--flag+ X` (accepted as well). So the 2nd, 3rd ... `--flag` become `--flag+`.
    """
    seen: set[str] = set()
    out = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in list_flags:
            if flag in seen:
                arg = flag + "+" + arg[len(flag):]
            seen.add(flag)
        out.append(arg)
    return out


def _spread_list_flags(args: list[str], list_flags: set[str]) -> list[str]:
    """`--ensemble A B C` for a list option means [A, B, C] (what a shell glob gives): the words after the
    flag up to the next option become repeated flags, which `_repeated_list_flags` turns into a list."""
    out: list[str] = []
    current = None
    for arg in args:
        if arg.startswith("-"):
            current = arg if arg in list_flags else None  # `--flag=value` is one value, never spread
        elif current is not None and out and out[-1] != current:
            out.append(current)
        out.append(arg)
    return out


def _is_list(hint: Any) -> bool:
    """list[X], or a union with a list in it (`list[str] | str`)."""
    return typing.get_origin(hint) is list or any(typing.get_origin(h) is list for h in typing.get_args(hint))


#: Short spellings kept from the argparse days (`translator average A B -o AVG.ckpt`).
SHORT_FLAGS = {"average": {"-o": "output"}}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's option help (types, defaults) under the docstring as written (one example a line)."""


def _run_function(name: str, function: Callable[..., Any], args: list[str]) -> Any:
    """Parse `args` against the function's signature (help: its docstring) and call it."""
    return function(**parse_function_args(name, function, args))


def parse_function_args(name: str, function: Callable[..., Any], args: list[str]) -> dict[str, Any]:
    """The keyword arguments that `args` give the command `name` (parsed against `function`'s signature)."""
    params = inspect.signature(function).parameters
    hints = typing.get_type_hints(function)
    positional = name not in OPTIONS_ONLY
    if "decode" in params:
        args = _legacy_decode_flags(args)
    list_flags = {f"--{p}" for p in params if _is_list(hints.get(p))}
    if not positional:
        args = _spread_list_flags(args, list_flags)
    args = _repeated_list_flags(args, list_flags)
    # jsonargparse reads a positional list as one "[a, b]" value; a shell glob gives one word per file.
    many = [p for p, param in params.items()
            if positional and param.default is param.empty and typing.get_origin(hints.get(p)) is list]

    doc = inspect.getdoc(function) or ""
    parser = ArgumentParser(prog=f"translator {name}", description=_description(doc), formatter_class=_HelpFormatter,
                            exit_on_error=False)  # main() makes a bad option one line, like the other user errors
    parser.add_argument("--config", action=ActionConfigFile, help="read options from a YAML file (see --print_config)")
    # Only the named parameters: a **kwargs is for Python callers (jsonargparse would follow evaluate's into
    # decode_config and offer a --default that evaluate then passes on twice).
    inferred: set[str] = set()
    if any(param.kind is param.VAR_KEYWORD for param in params.values()):
        inferred = set(ArgumentParser().add_function_arguments(function, as_group=False)) - set(params)
    parser.add_function_arguments(function, as_group=False, as_positional=positional, skip={*many, *inferred})
    for p in many:
        parser.add_argument(p, nargs="+", type=typing.get_args(hints[p])[0], help=_param_help(doc, p))
    for flag, dest in SHORT_FLAGS.get(name, {}).items():
        parser.add_argument(flag, dest=dest, help=f"short for --{dest}")
    config = parser.instantiate(parser.parse_args(args))
    config.pop("config", None)
    return dict(config)


# ---- the table: lookup, docstrings, usage -------------------------------------------------------
def _commands(table: dict[str, Any] = COMMANDS, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(name, "module:function") of every command, subcommands as "data list"."""
    for name, entry in table.items():
        if name == "_help":
            continue
        if isinstance(entry, dict):
            yield from _commands(entry, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", entry


def _load(target: str) -> Callable[..., Any]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def _docstring(target: str) -> str:
    """The docstring of "module:function", read from its source: no import, so `translator --help` need
    not load Lightning and Gradio (importing translator.app alone takes 16 s on a busy 2-core machine)."""
    module, _, function = target.partition(":")
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    return ast.get_docstring(node) or ""


def _description(doc: str) -> str:
    """The docstring without its Args: section (that becomes the help of each option)."""
    out, in_args = [], False
    for line in doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
        elif in_args and line and not line[0].isspace():
            in_args = False
        if not in_args:
            out.append(line)
    return "\n".join(out).strip()


def _param_help(doc: str, name: str) -> str | None:
    """One parameter's description in the Args: section of a (Google-style) docstring."""
    import docstring_parser

    return next((p.description for p in docstring_parser.parse(doc).params if p.arg_name == name), None)


def usage(group: tuple[str, ...] = ()) -> str:
    """The command list: each command with the first line of its function's docstring."""
    table = COMMANDS
    for word in group:
        table = table[word]
    prefix = " ".join(group)
    rows = [(name, _docstring(target).split("\n", 1)[0]) for name, target in _commands(table, prefix and prefix + " ")]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:<{width}}  {summary}" for name, summary in rows]
    head = f"usage: translator {prefix + ' ' if prefix else ''}COMMAND [options]"
    about = f"\n\n{table['_help']}" if "_help" in table else ""
    return (f"{head}{about}\n\ncommands:\n" + "\n".join(lines)
            + "\n\nRun `translator COMMAND --help` for the options and examples of one command.")


def main(argv: list[str] | None = None) -> None:
    """Run the command of COMMANDS that argv names; a user error becomes one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from translator.runtime import tune_malloc

    tune_malloc()
    words: list[str] = []
    entry: Any = COMMANDS
    while isinstance(entry, dict):
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(usage(tuple(words)))
            return
        if argv[0] not in entry or argv[0] == "_help":
            choices = ", ".join(name for name in entry if name != "_help")
            print(f"translator: unknown command {' '.join([*words, argv[0]])!r}; choose one of {choices}\n\n"
                  f"{usage(tuple(words))}", file=sys.stderr)
            raise SystemExit(2)
        words.append(argv[0])
        entry, argv = entry[argv[0]], argv[1:]
    name = " ".join(words)
    previous = _stop_on_sigterm() if name not in LIGHTNING_COMMANDS else None  # Lightning handles its own
    try:
        function = _load(entry)
        if name in LIGHTNING_COMMANDS:
            function(argv)
        else:
            _run_function(name, function, argv)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: outputs being written were removed (translator.atomic)
        if os.environ.get("TRANSLATOR_DEBUG"):
            raise
        number = err.args[0] if err.args and isinstance(err.args[0], int) else signal.SIGINT
        print(f"translator {name}: stopped by {signal.Signals(number).name}; no output file was left half-written",
              file=sys.stderr)
        raise SystemExit(128 + number) from None
    except argparse.ArgumentError as err:  # a bad option or value: jsonargparse's message, on one line
        if os.environ.get("TRANSLATOR_DEBUG"):
            raise
        print(f"translator {name}: error: {' '.join(str(err).split())} (see `translator {name} --help`)",
              file=sys.stderr)
        raise SystemExit(2) from None
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError, KeyError) as err:
        if os.environ.get("TRANSLATOR_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"translator {name}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop the command as Ctrl-C does (a KeyboardInterrupt, which removes the temporary file of
    an output being written); returns the previous handler, or None off the main thread (no handler there)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(number: int, frame: Any) -> None:
        raise KeyboardInterrupt(number)

    previous = signal.signal(signal.SIGTERM, stop)
    return signal.SIG_DFL if previous is None else previous


if __name__ == "__main__":
    main()
