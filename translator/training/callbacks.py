"""Callbacks every `Seq2SeqSystem` fit runs with (`Seq2SeqSystem.configure_callbacks`): exact resume and
loud data problems.

- `RandomStates`: the checkpoint carries the Python, NumPy, torch CPU and CUDA random states of every
  rank, and a resumed run restores them where the uninterrupted run stood, so dropout masks continue
  as if the run had never stopped (with the sampler's resume, weights on CPU are bit-identical).
- `AtomicCheckpointIO`: a checkpoint is written to a temporary file in the same folder, flushed to
  disk, then renamed over the old one, so a kill at any moment leaves the previous or the new file,
  never a half-written one.
- `DataReport`: one line per split with the pair and drop counts when fit starts, and an error (not
  Lightning's "No training batches" warning and exit 0) when nothing is left to train on.
- `TrimHeap`: on the CPU, glibc's heap gives its free pages back when the holes that batches of many
  shapes leave in it grow (the policy and its measurements: `translator.cpu_fastpaths.HeapTrim`).
- `PolynomialAverage` (with `--model.weight_average ETA`): Lightning's `WeightAveraging` keeping a
  polynomial-decay average of the weights, which validation, the full checkpoints and inference use.
"""
from __future__ import annotations

import logging
import random
import sys
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from translator.artifacts.checkpoint import atomic_torch_save
from translator.cpu_fastpaths import HeapTrim

log = logging.getLogger("translator.callbacks")


# ---- random states -----------------------------------------------------------------------------
def collect_random_states() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA random states as plain data (weights_only-loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_random_states(states: dict[str, Any]) -> None:
    """Set the states `collect_random_states` returned (CUDA only when this process has the same devices)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _gather(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order (a list of one without torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


class RandomStates(L.Callback):
    """Save every rank's random states in the checkpoint and restore them on resume.

    Where they are restored matters. A checkpoint written inside an epoch (after a train step) is
    resumed by Lightning after it has re-created the epoch's data iterator, which draws one torch
    random number, so the states are restored just before the next train step. A checkpoint written
    at an epoch boundary is followed by that draw in both runs, so its states are restored when fit
    starts, before the iterator exists.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None  # states to restore, and when
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if stage == "fit" and type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # noqa: E721 - not subclasses
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        mid_epoch = False
        if trainer is not None:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            total = trainer.num_training_batches
            mid_epoch = 0 < done < total if isinstance(total, int) else done > 0
        return {"ranks": _gather(collect_random_states()), "mid_epoch": mid_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks") or []
        if not ranks:
            return
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() \
            else (self._trainer.global_rank if self._trainer is not None else 0)
        if len(ranks) != (self._trainer.world_size if self._trainer is not None else 1):
            log.warning("the checkpoint holds random states of %d rank(s) but this run has %d: the resumed run "
                        "will not repeat the uninterrupted one exactly", len(ranks),
                        self._trainer.world_size if self._trainer is not None else 1)
        self._pending = {"states": ranks[min(rank, len(ranks) - 1)], "mid_epoch": bool(state_dict.get("mid_epoch"))}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None and not self._pending["mid_epoch"]:
            restore_random_states(self._pending.pop("states"))
            self._pending = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            restore_random_states(self._pending.pop("states"))
            self._pending = None


# ---- atomic checkpoint writes ------------------------------------------------------------------
class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file next to the target, fsync, then os.replace (atomic on POSIX).

    Remote paths (s3://, ...) are left to Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))


@rank_zero_only
def note(message: str) -> None:
    """A note for the user of `translator fit` on stderr (rank zero only), not a Python warning."""
    print(f"translator fit: note: {message}", file=sys.stderr)


# ---- data report -------------------------------------------------------------------------------
class DataReport(L.Callback):
    """Pair and drop counts of the splits fit uses, on stderr; a ValueError when no train batch is left."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = getattr(trainer, "datamodule", None)
        stats = dict(getattr(datamodule, "stats", None) or {})
        for split in ("train", "val"):
            if split in stats:
                self._report(datamodule, split, stats[split])
        train = stats.get("train")
        if train is not None and (train.get("batches") == 0 or train.get("pairs") == 0):
            raise ValueError(no_batches_message(datamodule, train))

    @rank_zero_only
    def _report(self, datamodule: Any, split: str, s: dict[str, Any]) -> None:
        print(f"translator fit: {split}: {describe_split(datamodule, split, s)}", file=sys.stderr)


def describe_split(datamodule: Any, split: str, s: dict[str, Any]) -> str:
    """'N pairs, B batches of <= T tokens; dropped: ...' from a DataModule's split statistics."""
    max_len = getattr(datamodule, "max_len", "?")
    long_fate = "dropped" if s.get("over_max_len_dropped") else "kept"
    return (f"{s.get('pairs', 0):,} pairs in {s.get('batches', 0):,} batches of <= {s.get('max_tokens', '?')} tokens; "
            f"{s.get('empty_dropped', 0):,} empty pairs dropped, {s.get('empty_source_dropped', 0):,} sources empty "
            f"after tokenizing dropped, {s.get('over_max_len', 0):,} longer than {max_len} tokens {long_fate}")


def no_batches_message(datamodule: Any, s: dict[str, Any]) -> str:
    """Why fit has nothing to train on, with the counts of what was dropped and the option to change."""
    name = getattr(datamodule, "dataset", "the dataset")
    pair = f" {datamodule.src_lang}->{datamodule.tgt_lang}" if getattr(datamodule, "src_lang", None) else ""
    hint = ""
    if s.get("over_max_len") and s.get("over_max_len_dropped"):
        hint = f"; raise --data.max_len (now {getattr(datamodule, 'max_len', '?')})"
    return f"no training batches left: {name}{pair} train: {describe_split(datamodule, 'train', s)}{hint}"


# ---- heap trimming -----------------------------------------------------------------------------
class TrimHeap(L.Callback):
    """A CPU training's `HeapTrim`: checked after every training step, and a trim after each validation
    (greedy decoding leaves holes of its own)."""

    def __init__(self) -> None:
        self.policy: HeapTrim | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.policy = HeapTrim() if pl_module.device.type == "cpu" else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.policy is not None:
            self.policy.after_step()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.policy is not None:
            self.policy.trim()


# ---- weight averaging --------------------------------------------------------------------------
def polynomial_decay_weight(eta: float, n_averaged: int) -> float:
    """The weight of the newest weights in the polynomial-decay average after `n_averaged` earlier updates:
    (eta + 1) / (t + eta) at update t = n_averaged + 1 (Shamir & Zhang 2013, "optimal averaging schemes").
    The average weighs update s by about s**eta: it follows the run, whatever its length, over roughly its
    last 1 / (eta + 1), so the random start never lingers (an EMA of fixed decay keeps 0.999**t of it)."""
    return (eta + 1.0) / (n_averaged + 1.0 + eta)


class PolynomialAverage(WeightAveraging):
    """Lightning's `WeightAveraging` with the polynomial-decay average of `polynomial_decay_weight`, updated
    after every optimizer step: validation (so `loss-min.ckpt` too) runs on the average, full checkpoints
    store it as their weights (the raw weights ride along for an exact resume, `current_model_state`), and
    the model ends the run holding it. `epochNN.ckpt` (weights only) keep each epoch's raw weights.

    For runs that end at a high learning rate (no annealing schedule, or stopped on time): both chat configs
    (benchmarks/RESULTS.md, "Weight averaging for the chat recipes")."""

    def __init__(self, eta: float) -> None:
        if not (isinstance(eta, (int, float)) and 0.0 < eta < float("inf")):
            raise ValueError(f"weight_average (eta) must be a finite number > 0, got {eta!r}")
        self.eta = float(eta)
        super().__init__(use_buffers=False, multi_avg_fn=self._update)

    def _update(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        torch._foreach_lerp_(averaged, current, polynomial_decay_weight(self.eta, int(n_averaged)))
