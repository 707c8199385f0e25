"""What a resumed fit (`--ckpt_path`) may change, and how the learning-rate schedule continues.

Resuming continues one run. Options that differ from the checkpoint's are listed in one message:

- refused (an error): the model's shape (every `--model.model.*` option), the data that defines
  the tokenizer and the examples (dataset, languages, tokenizer settings), and the optimizer and
  schedule shape (`--model.lr`, `weight_decay`, `adam_beta2`, `warmup_steps`, `lr_schedule`): the
  optimizer state restored from the checkpoint would silently override them. The message ends with the
  checkpoint's values as flags that continue the run; or start a new run instead.
- applied, with a note: everything else (label smoothing, validation settings, `--data.max_tokens`,
  ...) from the resume step on. A new run length (`--trainer.max_steps` / `max_epochs`) with the
  cosine schedule continues from the learning rate reached at the resume step down to zero at the new
  end (`resumed_lr_factor`), so the learning rate never jumps.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from typing import Any

from translator.artifacts.checkpoint import CheckpointMeta, model_class

#: System options that shape the optimizer or the schedule: a resume cannot apply them.
OPTIMIZER_OPTIONS = ("lr", "weight_decay", "adam_beta2", "warmup_steps", "lr_schedule")
#: Data options that change the tokenizer or which pairs exist: a resume cannot apply them.
DATA_IDENTITY_OPTIONS = ("dataset", "src_lang", "tgt_lang", "task", "vocab_size", "tokenizer_type", "joint_vocab",
                         "character_coverage", "context_turns", "replay", "replay_dataset", "replay_src_lang",
                         "replay_tgt_lang")
#: Values linked from the data, not given by the user.
LINKED = ("src_vocab_size", "tgt_vocab_size", "pad_id")


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flat(f"{prefix}.{key}", sub))
        return out
    return {prefix: value}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _same_class(a: Any, b: Any) -> bool:
    """Class paths naming the same class ("translator.models.Transformer" = "...transformer.Transformer")."""
    if a == b:
        return True
    try:
        return model_class({"class_path": a}) is model_class({"class_path": b})
    except (ValueError, ImportError):
        return False


@dataclasses.dataclass(frozen=True)
class Difference:
    """One option whose value differs from the checkpoint's: `--flag NEW (checkpoint: OLD)`."""

    flag: str
    new: Any
    old: Any
    why: str = ""
    """Set when OLD cannot be given back as a flag (a value linked from the data, another model class)."""

    def __str__(self) -> str:
        return f"{self.flag} {self.new} (checkpoint: {self.old}{'; ' + self.why if self.why else ''})"

    @property
    def give_back(self) -> str | None:
        """`--flag OLD`, the option that continues the run, or None."""
        return None if self.why else f"{self.flag} {shlex.quote(str(self.old))}"


def resume_differences(saved_hparams: dict[str, Any], hparams: dict[str, Any], saved_data: dict[str, Any],
                       data: dict[str, Any]) -> tuple[list[Difference], list[Difference]]:
    """(refused, applied): one Difference per option that differs."""
    refused, applied = [], []
    saved_model = dict(saved_hparams.get("model") or {})
    model = dict(hparams.get("model") or {})
    if not _same_class(saved_model.get("class_path"), model.get("class_path")):
        refused.append(Difference("--model.model.class_path", model.get("class_path"), saved_model.get("class_path"),
                                  "another model"))
    else:
        old = _flat("--model.model.init_args", saved_model.get("init_args") or {})
        new = _flat("--model.model.init_args", model.get("init_args") or {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) is None or new.get(key) is None:
                continue  # not given (a value linked from the data is filled in later)
            if key.rsplit(".", 1)[-1] in LINKED and old[key] != new[key]:
                refused.append(Difference(key, new[key], old[key], "from the data's tokenizer"))
            elif not _same(old[key], new[key]):
                refused.append(Difference(key, new[key], old[key]))
    for key in sorted(set(saved_hparams) | set(hparams)):
        if key == "model" or key not in saved_hparams or key not in hparams:
            continue
        if not _same(saved_hparams[key], hparams[key]):
            difference = Difference(f"--model.{key}", hparams[key], saved_hparams[key])
            (refused if key in OPTIMIZER_OPTIONS else applied).append(difference)
    for key in sorted(set(saved_data) | set(data)):
        if key not in saved_data or key not in data or saved_data[key] is None or data[key] is None:
            continue
        if not _same(saved_data[key], data[key]):
            difference = Difference(f"--data.{key}", data[key], saved_data[key])
            (refused if key in DATA_IDENTITY_OPTIONS else applied).append(difference)
    return refused, applied


def check_resume(path: str, checkpoint: dict[str, Any], hparams: dict[str, Any], data: dict[str, Any],
                 fitting: bool) -> list[Difference]:
    """The one resume check, run by the CLI before anything loads and by the system when Lightning restores.

    ValueError (`refused_message`) when an option the run cannot change differs from the checkpoint's
    (validate / test: only the model's shape); else the differences applied from the resume step on.
    """
    meta = CheckpointMeta.from_checkpoint(path, checkpoint)
    if meta.hparams.get("model") is None:
        return []
    refused, applied = resume_differences(meta.hparams, hparams, meta.data, data)
    if not fitting:
        refused = [d for d in refused if d.flag.startswith("--model.model.")]
        applied = []
    if refused:
        raise ValueError(refused_message(path, refused))
    return applied


def refused_message(path: str, refused: list[Difference]) -> str:
    lines = "\n  ".join(map(str, refused))
    give_back = [d.give_back for d in refused if d.give_back]
    how = ("To continue the run, give the checkpoint's values (a differing value may come from the --config file, "
           f"not only from the command line):\n  {' '.join(give_back)}\nor" if give_back else "Either use the "
           "checkpoint's config to continue the run, or")
    return (f"cannot resume {path} with options that differ from the checkpoint's:\n  {lines}\n"
            "The model's shape, the data that defines its tokenizer, and the optimizer and schedule (restored "
            f"from the checkpoint's optimizer state) cannot change within a run. {how} start a new run without "
            "--ckpt_path.")


def applied_message(path: str, applied: list[Difference]) -> str:
    lines = "\n  ".join(map(str, applied))
    return f"resuming {path} with options that differ from the checkpoint's (applied from the resume step on):\n  {lines}"


def resumed_lr_factor(step: int, base: Any, anchor: tuple[int, float] | None, total_steps: int) -> float:
    """`base(step)`, or after `anchor = (s0, f0)` a cosine from f0 at step s0 to zero at `total_steps`."""
    if anchor is None or step < anchor[0]:
        return base(step)
    s0, f0 = anchor
    progress = min(1.0, (step - s0) / max(1, total_steps - s0))
    return f0 * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule_anchor(scheduler_state: dict[str, Any] | None, factor: Any, previous: tuple[int, float] | None
                    ) -> tuple[int, float] | None:
    """The anchor that keeps the learning rate continuous at the resume step.

    `scheduler_state` is the checkpoint's LambdaLR state (its step and the factor it had reached);
    `factor(step, anchor)` is this run's schedule. When this run's schedule gives the factor the run
    had reached, the previous anchor stays; otherwise the schedule is re-anchored at the resume step.
    """
    if not scheduler_state or not scheduler_state.get("base_lrs") or not scheduler_state.get("_last_lr"):
        return previous
    step = int(scheduler_state.get("last_epoch", 0))
    base_lr = float(scheduler_state["base_lrs"][0])
    if base_lr == 0.0:
        return previous
    reached = float(scheduler_state["_last_lr"][0]) / base_lr
    if math.isclose(factor(step, previous), reached, rel_tol=1e-9, abs_tol=1e-12):
        return previous
    return (step, reached)
