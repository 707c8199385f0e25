"""Helpers shared by benchmarks/quality.py and benchmarks/speed.py: configs, checks, hardware, tables.

User errors (missing data, a checkpoint for another language pair, a zero budget) raise
`BenchmarkError`; `run_main` prints them as one line on stderr and exits with status 2.
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "translator" / "configs"
FAMILIES = ("transformer", "attention", "lstm")
#: model class name (as recorded in a checkpoint) -> family / shipped config name
FAMILY_OF_ARCH = {"Transformer": "transformer", "AttentionSeq2Seq": "attention", "LSTMSeq2Seq": "lstm"}
DATASET = "multi30k"
TEST_SPLIT_NAME = "test_2016_flickr"  # the registry's "test" split of multi30k


class BenchmarkError(Exception):
    """A problem the user can fix (bad option, missing data, mismatched checkpoint): exit 2, no traceback."""


def run_main(prog: str, main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> None:
    """Call main(argv); a BenchmarkError (or a user error raised by translator) becomes one line + exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = main(argv)
    except (BenchmarkError, FileNotFoundError, IsADirectoryError) as err:
        if os.environ.get("TRANSLATOR_DEBUG"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


def config_path(family: str) -> Path:
    return CONFIG_DIR / f"{family}.yaml"


def load_config(family: str) -> dict[str, Any]:
    """The shipped YAML of a family as plain data, its trainer block over the CLI's shared TRAINER_DEFAULTS."""
    import yaml

    from translator.cli import TRAINER_DEFAULTS

    with open(config_path(family), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["trainer"] = {**TRAINER_DEFAULTS, **(config.get("trainer") or {})}
    return config


def positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    """BenchmarkError unless value is None or > 0 (>= 0 with allow_zero)."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise BenchmarkError(f"{name} must be {bound}, got {value:g}")


def check_data(src_lang: str, tgt_lang: str, data_dir: str | None, splits: Sequence[str]) -> Path:
    """The multi30k folder holding `splits` for this pair, or BenchmarkError saying where it looked."""
    from translator.data import find_dataset, resolve_languages

    try:
        resolve_languages(DATASET, src_lang, tgt_lang)
        folder = None
        for split in splits:
            folder = find_dataset(DATASET, split, src_lang, tgt_lang, data_dir)
    except (ValueError, FileNotFoundError) as err:
        message = str(err).replace("--data.data_dir", "--data_dir")
        raise BenchmarkError(message) from None
    return folder


def parse_checkpoint_specs(specs: Sequence[str] | None, bare_allowed: bool) -> list[tuple[str | None, Path]]:
    """`family=PATH` (or a bare PATH when allowed) -> [(family or None, path)]."""
    out = []
    for spec in specs or []:
        family, sep, path = spec.partition("=")
        if not sep:
            if not bare_allowed:
                raise BenchmarkError(f"--checkpoint {spec!r}: write FAMILY=PATH, e.g. transformer=runs/best.ckpt")
            family, path = None, spec
        elif family not in FAMILIES:
            if bare_allowed and Path(spec).exists():  # a file name that happens to contain "="
                family, path = None, spec
            else:
                raise BenchmarkError(f"--checkpoint {spec!r}: unknown family {family!r}; "
                                     f"choose one of {', '.join(FAMILIES)}")
        out.append((family, Path(path)))
    return out


def check_checkpoint(path: Path, src_lang: str, tgt_lang: str, family: str | None = None) -> dict[str, Any]:
    """Read a checkpoint and check it translates multi30k src->tgt (and is of `family`); return its facts.

    Returns {"family", "architecture", "parameters", "epochs", "steps", "src_lang", "tgt_lang"}.
    """
    from translator.artifacts.checkpoint import read_checkpoint
    from translator.training.system import BUNDLE_KEY

    try:
        ckpt = read_checkpoint(path)
    except ValueError as err:
        raise BenchmarkError(str(err)) from None
    bundle = ckpt[BUNDLE_KEY]
    data = dict(bundle.get("data") or {})
    arch = str(bundle.get("model", {}).get("class_path", "")).rpartition(".")[2]
    found = FAMILY_OF_ARCH.get(arch)
    if found is None:
        raise BenchmarkError(f"{path} holds a {arch or 'unknown'} model, not one of {', '.join(FAMILY_OF_ARCH)}")
    if family is not None and found != family:
        raise BenchmarkError(f"{path} is a {found} checkpoint ({arch}), but was given as {family}={path}")
    if data.get("dataset") not in (None, DATASET):
        raise BenchmarkError(f"{path} was trained on {data['dataset']!r}; these benchmarks use {DATASET}")
    trained = (data.get("src_lang"), data.get("tgt_lang"))
    if None not in trained and trained != (src_lang, tgt_lang):
        raise BenchmarkError(f"{path} translates {trained[0]}->{trained[1]}, but {src_lang}->{tgt_lang} was asked "
                             f"for; pass --src_lang {trained[0]} --tgt_lang {trained[1]} or another checkpoint")
    # "processed" counts epochs whose batches all ran (the last one possibly cut short by max_time);
    # "completed" lags by one in checkpoints saved at the end-of-epoch validation.
    progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("total", {})
    epochs = progress.get("processed", (ckpt["epoch"] + 1) if "epoch" in ckpt else None)
    return {"family": found, "architecture": arch, "parameters": count_parameters(ckpt["state_dict"]),
            "epochs": epochs, "steps": ckpt.get("global_step"), "src_lang": trained[0], "tgt_lang": trained[1]}


def count_parameters(state_dict: dict[str, Any]) -> int:
    """Model parameters in a Lightning state_dict, counting tied (shared-storage) tensors once."""
    seen, total = set(), 0
    for key, tensor in state_dict.items():
        if not key.startswith("model."):
            continue
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if ident not in seen:
            seen.add(ident)
            total += tensor.numel()
    return total


def hardware() -> dict[str, Any]:
    """CPU model, cores, memory, accelerator and library versions of this machine."""
    import torch

    cpu, flags, ident = None, set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and cpu is None:
                cpu = value
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key in ("cpu family", "model") and key not in ident:
                ident[key] = value
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    memory = None
    try:
        kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        memory = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("lightning", "sacrebleu", "sentencepiece"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            pass
    gpu = None
    if torch.cuda.is_available():
        gpu = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    # "AMD EPYC" names several generations about 2x apart in speed: family/model tells them apart (23/1: Zen 1)
    cpu_id = f"family {ident['cpu family']} model {ident['model']}" if len(ident) == 2 else None
    return {"cpu": cpu, "cpu_id": cpu_id, "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
            "logical_cores": os.cpu_count(), "usable_cores": usable, "torch_threads": torch.get_num_threads(),
            "memory_gib": memory, "gpu": gpu, "platform": platform.platform(), "versions": versions}


def hardware_line(hw: dict[str, Any]) -> str:
    v = hw["versions"]
    gpu = ", ".join(hw["gpu"]) if hw.get("gpu") else "no GPU"
    cpu = f"{hw['cpu']}, {hw['cpu_id']}" if hw.get("cpu_id") else hw["cpu"]
    return (f"{cpu} ({hw['usable_cores']} usable of {hw['logical_cores']} logical cores, "
            f"{hw['torch_threads']} torch threads, {hw['memory_gib']} GiB, {'/'.join(hw['cpu_flags']) or '-'}), "
            f"{gpu}; torch {v['torch']}, lightning {v.get('lightning', '?')}, python {v['python']}")


def shell(cmd: Sequence[str]) -> str:
    """A command as a copy-pasteable shell line (this interpreter shown as `python`)."""
    parts = ["python" if i == 0 and c == sys.executable else str(c) for i, c in enumerate(cmd)]
    return shlex.join(parts)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    """A plain-text (aligned) or Markdown table; None shows as '-'."""
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in cells])


def fmt(value: float | None, digits: int = 1) -> str | None:
    return None if value is None else f"{value:,.{digits}f}"


def duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
