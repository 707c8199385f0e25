"""`translator` entry point.

    translator fit|validate|test --config translator/configs/transformer.yaml   (LightningCLI)
    translator translate --checkpoint CKPT [--input FILE] [--output FILE] [--decoder beam] ...
    translator evaluate --checkpoint CKPT [--checkpoint CKPT2 ...] (--dataset NAME | --source F --reference F)
    translator average CKPT CKPT ... --output AVG.ckpt
    translator app --checkpoint CKPT [--chat_checkpoint CKPT] [--port 7860]
    translator data list | download NAME | stats NAME

Everything here is a thin wrapper over functions a user can import and call.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

from translator.decoding import DecodeConfig, DecodeOptions

LIGHTNING_COMMANDS = ("fit", "validate", "test")
TOOL_COMMANDS = ("translate", "evaluate", "average", "app", "data")

USAGE = """usage: translator COMMAND [options]

Training (LightningCLI; every option overridable, `--print_config` shows the full config):
  fit        train a model            translator fit --config translator/configs/transformer.yaml
  validate   validation loss/BLEU     translator validate --config CONFIG --ckpt_path CKPT
  test       test-split loss          translator test --config CONFIG --ckpt_path CKPT

Using checkpoints:
  translate  translate lines of a file or stdin      translator translate --checkpoint CKPT < in.txt
  evaluate   sacreBLEU / chrF report, BLEU by length  translator evaluate --checkpoint CKPT --dataset multi30k
  average    average the weights of several epochs    translator average RUN/epoch*.ckpt --output avg.ckpt
  app        Gradio app: Translate and Chat tabs      translator app --checkpoint CKPT

Data:
  data list | data download NAME | data stats NAME

Run `translator COMMAND --help` for the options of one command.
"""


def _lightning_cli(args: list[str]) -> None:
    from lightning.pytorch.cli import LightningCLI

    from translator.data import Seq2SeqDataModule
    from translator.system import Seq2SeqSystem

    class TranslatorCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            # Values that come from the data are linked, never typed twice.
            for name in ("src_vocab_size", "tgt_vocab_size", "pad_id"):
                parser.link_arguments(f"data.{name}", f"model.model.init_args.{name}", apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            _cpu_precision(self.config.get(self.config.get("subcommand")) or self.config)

    # LightningCLI reads sys.argv itself; handing it `args` as well only makes it warn.
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "translator", *args]
    try:
        TranslatorCLI(Seq2SeqSystem, Seq2SeqDataModule, save_config_kwargs={"overwrite": True})
    finally:
        sys.argv = saved_argv


def _cpu_precision(config: Any) -> None:
    """bf16 on a CPU that only emulates it (AVX2) runs ~40x slower than float32: train in float32 there."""
    import torch

    from translator.runtime import cpu_bf16_is_fast

    trainer = config.get("trainer") if hasattr(config, "get") else None
    precision = str(trainer.get("precision") or "") if trainer is not None else ""
    accelerator = str(trainer.get("accelerator") or "auto") if trainer is not None else "auto"
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not cpu_bf16_is_fast():
        print(f"translator: note: this CPU has no native bf16 (measured slower than float32), so "
              f"--trainer.precision {precision} becomes 32-true", file=sys.stderr)
        trainer["precision"] = "32-true"


def translate(
    checkpoint: str,
    input: str | None = None,
    output: str | None = None,
    decode: DecodeOptions = DecodeOptions(),
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "fp32",
) -> None:
    """Translate one sentence per line from a file (or stdin) to a file (or stdout), in input order.

    Every input line gives exactly one output line; empty and whitespace-only lines stay empty.
    With --decode.nbest N > 1 each output line is `text1<TAB>score1<TAB>text2<TAB>score2 ...`, best
    first (`cut -f1` gives the 1-best translations; score = the ranking score). A chat checkpoint
    replies to each line with its chat decoding.

    Args:
        checkpoint: a .ckpt written by `translator fit`.
        input: file to read (UTF-8, one sentence per line); stdin when omitted or "-".
        output: file to write; stdout when omitted or "-" (a progress bar is shown when writing a file).
        decode: decoding options over the checkpoint's defaults (translation: beam 5, length penalty 1.0;
            chat: CHAT_DECODING), e.g. --decode.method greedy --decode.nbest 3.
        batch_size: sentences decoded together (sorted by length internally).
        device: cpu, cuda, cuda:1, ...
        precision: fp32, or bf16 (autocast: faster on AVX-512 bf16 / AMX CPUs and GPUs; output may differ slightly).
    """
    from translator.inference import translate_file

    translate_file(checkpoint, input, output, decode, device=device, batch_size=batch_size, precision=precision)


#: Decoding flags from before `--decode.*` (each DecodeConfig field as --NAME, and --decoder for the
#: method): still accepted by translate and evaluate, with a deprecation note. Generated, not typed again.
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
        print(f"translator: note: deprecated decoding flag(s): {spelled}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    """Dispatch to LightningCLI (fit/validate/test) or to the tool commands."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from translator.runtime import tune_malloc

    tune_malloc()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        if command in LIGHTNING_COMMANDS:
            _lightning_cli([command, *rest])
            return
        if command not in TOOL_COMMANDS:
            print(f"translator: unknown command {command!r}; choose one of "
                  f"{', '.join(LIGHTNING_COMMANDS + TOOL_COMMANDS)}\n\n{USAGE}", file=sys.stderr)
            raise SystemExit(2)
        _tool_cli(command, rest)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError, KeyError) as err:
        if os.environ.get("TRANSLATOR_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"translator {command}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


def average(args: list[str]) -> None:
    """`translator average CKPT CKPT ... --output AVG`: one checkpoint with the mean weights."""
    import argparse

    from translator.checkpoint import average_checkpoints

    parser = argparse.ArgumentParser(
        prog="translator average",
        description="Average the weights of checkpoints from one run (e.g. the last epochs that "
                    "`translator fit` keeps as epochNN.ckpt) into one inference checkpoint.")
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files of the same model and tokenizer")
    parser.add_argument("--output", "-o", required=True, help="where to write the averaged checkpoint")
    options = parser.parse_args(args)
    path = average_checkpoints(options.checkpoints, options.output)
    print(f"averaged {len(options.checkpoints)} checkpoints -> {path}")


def _tool_cli(command: str, args: list[str]) -> None:
    from jsonargparse import CLI

    if command == "average":
        average(args)
        return

    components: dict[str, Any]
    # translate/evaluate take every option as --name (also the required --checkpoint), and a
    # repeated --checkpoint/--label adds to the list instead of replacing the earlier value.
    options: dict[str, Any] = {"as_positional": False} if command in ("translate", "evaluate") else {}
    if command in ("translate", "evaluate"):
        args = _legacy_decode_flags(args)
    if command == "evaluate":
        args = _append_repeated(args, ("--checkpoint", "--label"))
    if command == "translate":
        components = {"translate": translate}
    elif command == "evaluate":
        from translator.evaluate_cmd import evaluate

        components = {"evaluate": evaluate}
    elif command == "app":
        from translator.app import launch

        components = {"app": launch}
    else:
        from translator import data

        components = {"data": {"list": data.list_command, "download": data.download_command,
                               "stats": data.stats_command}}
    CLI(components, args=[command, *args], prog="translator", **options)


def _append_repeated(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """Turn the 2nd, 3rd ... `--flag X` into jsonargparse's append form `--flag+ X`."""
    seen: set[str] = set()
    out = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in flags:
            if flag in seen:
                arg = flag + "+" + arg[len(flag):]
            seen.add(flag)
        out.append(arg)
    return out


if __name__ == "__main__":
    main()
