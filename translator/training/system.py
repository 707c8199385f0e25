"""Seq2SeqSystem: the one LightningModule that trains all three model families.

Teacher forcing is written once (`_shared_step`); the model is any `Seq2Seq`. The checkpoint it
writes is self-contained: weights, the model's constructor arguments (plain data) and the
tokenizer's SentencePiece bytes, so `translator.artifacts.checkpoint.load_bundle` needs no other file.
"""
from __future__ import annotations

import math
import time
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from translator.artifacts.checkpoint import BUNDLE_KEY, CheckpointMeta, make_bundle, tokenizer_id
from translator.decoding import DecodeConfig, with_recipe
from translator.models.base import Seq2Seq
from translator.tokenizer import Tokenizer
from translator.training.callbacks import DataReport, PolynomialAverage, RandomStates, TrimHeap, note
from translator.training.finetune import lineage, read_parent, report_coverage
from translator.training.loss import (contrastive_loss, label_smoothed_loss, projected_smoothed_cross_entropy,
                                      symmetric_kl)
from translator.training.resume import Difference, applied_message, check_resume, resumed_lr_factor, schedule_anchor

#: Checkpoint key of the run facts a resume needs: run length and the schedule's anchor (translator.training.resume).
RUN_KEY = "translator_run"


def lr_factor(step: int, warmup_steps: int, schedule: str, total_steps: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    step = step + 1
    warmup = max(1, warmup_steps)
    if schedule == "constant":
        return min(1.0, step / warmup)
    if schedule == "inverse_sqrt":
        return min(step / warmup, math.sqrt(warmup / step))
    if schedule == "cosine":
        if step <= warmup:
            return step / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose constant, inverse_sqrt or cosine")


class Seq2SeqSystem(L.LightningModule):
    """Teacher forcing, label-smoothed loss, AdamW + warmup schedule, validation BLEU."""

    def __init__(
        self,
        model: Seq2Seq,
        label_smoothing: float = 0.1,
        lr: float = 5e-4,
        weight_decay: float = 0.0001,
        adam_beta2: float = 0.98,
        warmup_steps: int = 1000,
        lr_schedule: Literal["inverse_sqrt", "cosine", "constant"] = "inverse_sqrt",
        val_bleu: bool = True,
        val_bleu_max_sentences: int | None = None,
        val_max_len_a: float = 1.5,
        val_max_len_b: int = 10,
        compile_loss: bool = True,
        teacher_forcing_ratio: float = 1.0,
        teacher_forcing_decay_steps: int = 0,
        rdrop_alpha: float = 0.0,
        contrastive_weight: float = 0.0,
        decoding: dict[str, Any] | None = None,
        init_from: str | None = None,
        weight_average: float = 0.0,
    ):
        """
        Args:
            model: the network (`translator.models.Transformer`, `AttentionSeq2Seq`, `LSTMSeq2Seq`).
            label_smoothing: epsilon of the label-smoothed cross-entropy (padding is ignored).
            lr: peak learning rate of AdamW, reached after `warmup_steps`.
            weight_decay: AdamW decoupled weight decay (not applied to biases and norms).
            adam_beta2: AdamW's second-moment decay (0.98 as in the Transformer paper).
            warmup_steps: linear warmup length in optimizer steps.
            lr_schedule: decay after warmup: inverse square root, cosine to zero, or constant.
            val_bleu: greedy-decode the validation set each validation epoch and log sacreBLEU.
            val_bleu_max_sentences: decode only this many validation sentences (None = all).
            val_max_len_a: decoded length limit is a * source length + b.
            val_max_len_b: see val_max_len_a.
            compile_loss: on CPU, fuse the loss with `torch.compile` (translator/cpu_fastpaths.py; about 3x faster
                than eager, falls back to eager with a warning when compiling fails).
            teacher_forcing_ratio: share of the decoder's input tokens that are the reference in training;
                the others are the model's own greedy predictions from a first teacher-forced pass without
                gradients (scheduled sampling, Bengio et al. 2015, in its two-pass form, Mihaylova & Martins
                2019, so every family, the Transformer included, trains the same way). 1.0 = plain teacher
                forcing (no second pass). Validation always teacher-forces; val BLEU runs free.
            teacher_forcing_decay_steps: > 0: the ratio falls linearly from 1.0 to teacher_forcing_ratio over
                this many optimizer steps, then stays (a schedule); 0: the ratio from the first step.
            rdrop_alpha: R-Drop weight alpha (Liang et al. 2021): every training batch runs through the
                model twice (two dropout masks, one doubled batch, so about twice the compute per step) and
                the loss is the mean of the two losses + alpha * their symmetric KL per non-pad target
                position. 0 = off (one pass, the plain loss).
            contrastive_weight: MMI training for chat (`translator.training.loss.contrastive_loss`): every training reply
                is also scored after the context of the previous pair in its batch (one doubled batch, about
                1.8x the compute per step) and the loss adds weight * mean softplus(-gap), gap = per-token
                log p(r|c) - log p(r|c'). It teaches the model which reply belongs to which message (hits@1 by
                likelihood and by anti-LM; benchmarks/RESULTS.md, "Chat"). 0 = off (the plain loss).
            decoding: the recipe's decoding, recorded in the checkpoint: `DecodeConfig` fields that replace the
                task's default decoding whenever the model decodes without options of its own (`translate`,
                `evaluate`, the app), e.g. {candidates: 8} in `chat_dailydialog.yaml`, chosen on its validation
                split. Options given on the command line still win. None = the task's default.
            init_from: fine-tune: start from the weights of this checkpoint, with its model configuration and
                its tokenizer, a new optimizer and schedule (translator/training/finetune.py); None = random weights.
            weight_average: eta > 0 keeps a polynomial-decay average of the weights over the run, about its last
                1 / (eta + 1) (`translator.training.callbacks.PolynomialAverage`); validation, the full checkpoints
                and inference use the average. For runs that end at a high learning rate (both chat
                configs: eta 10); 0 = off (the last weights).
        """
        super().__init__()
        if not 0.0 <= teacher_forcing_ratio <= 1.0:
            raise ValueError(f"teacher_forcing_ratio must be in [0, 1], got {teacher_forcing_ratio}")
        if teacher_forcing_decay_steps < 0:
            raise ValueError(f"teacher_forcing_decay_steps must be >= 0, got {teacher_forcing_decay_steps}")
        if not isinstance(model, Seq2Seq):
            raise TypeError(f"model must be a translator.models Seq2Seq, got {type(model).__name__}")
        if not (isinstance(rdrop_alpha, (int, float)) and 0.0 <= rdrop_alpha < math.inf):
            raise ValueError(f"rdrop_alpha must be a finite number >= 0 (0 = off), got {rdrop_alpha!r}")
        if not (isinstance(contrastive_weight, (int, float)) and 0.0 <= contrastive_weight < math.inf):
            raise ValueError(f"contrastive_weight must be a finite number >= 0 (0 = off), got {contrastive_weight!r}")
        if not (isinstance(weight_average, (int, float)) and 0.0 <= weight_average < math.inf):
            raise ValueError(f"weight_average must be a finite number >= 0 (eta; 0 = off), got {weight_average!r}")
        if decoding is not None:
            with_recipe(DecodeConfig(), decoding)  # unknown fields or bad values: one message now, not at the first decode
        if rdrop_alpha and contrastive_weight:
            raise ValueError("rdrop_alpha and contrastive_weight both double the batch; use one of them")
        self.save_hyperparameters(ignore=["model"])
        self.hparams["model"] = model.config()  # plain data: rebuilt by load_bundle, weights_only-safe
        self.model = model
        self.tokenizer: Tokenizer | None = None
        self._val_hyps: list[tuple[int, str, str]] = []
        self._step_start = 0.0
        self._warned_truncation = False
        self._resumed: dict[str, Any] | None = None  # the loaded checkpoint's schedule facts, for configure_optimizers
        self._anchor: tuple[int, float] | None = None  # where a resumed cosine schedule was re-anchored
        self.parent: dict[str, Any] | None = None  # lineage of the checkpoint this run was fine-tuned from

    def configure_callbacks(self) -> list[L.Callback]:
        """Exact resume (every random state in the checkpoint, atomic writes), the data report, on the CPU a
        heap that gives its holes back, and the weight average when `weight_average` is set."""
        eta = self.hparams.get("weight_average") or 0.0
        return [RandomStates(), DataReport(), TrimHeap()] + ([PolynomialAverage(eta)] if eta else [])

    # ---- wiring ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and getattr(datamodule, "tokenizer", None) is not None:
            self.tokenizer = datamodule.tokenizer
        if self.tokenizer is None:
            raise ValueError("Seq2SeqSystem needs a tokenizer: train with translator.data.Seq2SeqDataModule "
                             "or set `system.tokenizer` before fitting")
        self._check_vocab(self.tokenizer, source="the data's tokenizer")
        if stage == "fit" and self.hparams.get("init_from") and getattr(self.trainer, "ckpt_path", None) is None:
            self._start_from(self.hparams.init_from, datamodule)

    def _start_from(self, path: str, datamodule: Any) -> None:
        """Fine-tuning: the parent's weights (its tokenizer must be the data's), its lineage, a coverage report."""
        parent, checkpoint = read_parent(path)
        if parent.tokenizer_id != tokenizer_id(self.tokenizer.to_dict()):
            raise ValueError(f"the data's tokenizer is not the tokenizer of --model.init_from {path}; a fine-tuning "
                             f"run encodes its data with its parent's tokenizer (--data.tokenizer_path {path})")
        state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"--model.init_from {path}: its weights do not fit the model "
                             f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
        self.parent = lineage(path, parent)
        if datamodule is not None and hasattr(datamodule, "sample_pairs") and self.global_rank == 0:
            report_coverage(self.tokenizer, datamodule, parent.data)

    def _check_vocab(self, tokenizer: Tokenizer, source: str) -> None:
        init = self.hparams["model"]["init_args"]
        expected = (init.get("src_vocab_size"), init.get("tgt_vocab_size"))
        actual = (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
        if expected != actual:
            raise ValueError(f"model vocabulary sizes (src, tgt) = {expected} do not match {source} {actual}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[BUNDLE_KEY] = make_bundle(self.hparams["model"], self.tokenizer, self._data_options(), self.parent)
        trainer = self._trainer
        checkpoint[RUN_KEY] = {"max_steps": getattr(trainer, "max_steps", None),
                               "max_epochs": getattr(trainer, "max_epochs", None),
                               "anchor": list(self._anchor) if self._anchor else None}

    def _data_options(self) -> dict[str, Any]:
        """The DataModule's options with the language pair it resolved (defaults are None)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        options = _plain(dict(getattr(datamodule, "hparams", {}) or {}))
        for key in ("src_lang", "tgt_lang", "task"):
            if getattr(datamodule, key, None):
                options[key] = getattr(datamodule, key)
        if getattr(datamodule, "chat_context_turns", None) is not None:  # what the chatbot must send: recorded
            options["chat_context_turns"] = datamodule.chat_context_turns
        return options

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        path = str(getattr(self._trainer, "ckpt_path", None) or "the checkpoint") if self._trainer is not None \
            else "the checkpoint"
        saved = dict(checkpoint.get("hyper_parameters") or {})
        if saved.get("model") is not None:
            applied = check_resume(path, checkpoint, dict(self.hparams), self._data_options(), fitting)
            run = checkpoint.get(RUN_KEY) or {}
            if fitting:
                for key in ("max_steps", "max_epochs"):
                    now = getattr(self.trainer, key, None)
                    if key in run and run[key] != now:
                        applied.append(Difference(f"--trainer.{key}", now, run[key]))
            if applied:
                note(applied_message(path, applied))
        meta = CheckpointMeta.from_checkpoint(path, checkpoint)
        if meta.parent is not None:  # a resumed fine-tuning run keeps its recorded lineage
            self.parent = meta.parent
        if fitting:
            schedulers = checkpoint.get("lr_schedulers") or [None]
            anchor = (checkpoint.get(RUN_KEY) or {}).get("anchor")
            self._resumed = {"scheduler": schedulers[0], "anchor": tuple(anchor) if anchor else None}
        recorded = meta.tokenizer_id
        if recorded is None or self.tokenizer is None:
            return
        if recorded != tokenizer_id(self.tokenizer.to_dict()):
            raise ValueError(
                "the checkpoint's tokenizer differs from the tokenizer of the data it is asked to continue on "
                "(another --data.vocab_size, dataset or language pair?); resume with the options the checkpoint "
                "was trained with, or start a new run without --ckpt_path")

    # ---- teacher forcing ---------------------------------------------------------------
    def _fit_to_model(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Truncate sources/targets longer than the model's position limit (warn once, never crash)."""
        limit = getattr(self.model, "max_src_len", None)
        if not limit or (batch["src"].size(1) <= limit and batch["tgt_in"].size(1) <= limit):
            return batch
        if not self._warned_truncation:
            rank_zero_warn(f"a batch has sequences longer than the model's limit of {limit} positions; "
                           "they are truncated (raise --model.model.init_args.max_len or lower --data.max_len)")
            self._warned_truncation = True
        batch = dict(batch)
        for key in ("src", "src_mask", "tgt_in", "tgt_out"):
            batch[key] = batch[key][:, :limit]
        return batch

    def teacher_forcing_now(self) -> float:
        """The teacher-forcing ratio at the current optimizer step (the schedule of teacher_forcing_*)."""
        hp = self.hparams
        final = float(hp.get("teacher_forcing_ratio", 1.0))
        decay = int(hp.get("teacher_forcing_decay_steps", 0))
        if final >= 1.0 or decay <= 0:
            return final
        step = self.trainer.global_step if self._trainer is not None else 0
        return 1.0 - (1.0 - final) * min(1.0, step / decay)

    def scheduled_inputs(self, batch: dict[str, Tensor], ratio: float) -> Tensor:
        """tgt_in (B, T) with each token after bos kept with probability `ratio`, else replaced by the
        model's greedy prediction of it from a teacher-forced pass (no gradients); padding stays."""
        tgt_in = batch["tgt_in"]
        with torch.no_grad():
            predicted = self.model(batch["src"], batch["src_mask"], tgt_in).argmax(-1)  # (B, T): guess of tgt_out
        keep = torch.rand(tgt_in[:, 1:].shape, device=tgt_in.device) < ratio  # (B, T-1)
        keep |= tgt_in[:, 1:] == self.model.pad_id
        mixed = torch.where(keep, tgt_in[:, 1:], predicted[:, :-1])  # position t reads the guess made at t-1
        return torch.cat([tgt_in[:, :1], mixed], 1)  # (B, T) bos first

    def _shared_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        """One teacher-forced step: logits for tgt_in, label-smoothed loss against tgt_out.

        In training with a teacher-forcing ratio below 1, tgt_in mixes in the model's own predictions.
        """
        batch = self._fit_to_model(batch)
        batch_size = batch["src"].size(0)
        ratio = self.teacher_forcing_now() if stage == "train" else 1.0
        tgt_in = batch["tgt_in"] if ratio >= 1.0 else self.scheduled_inputs(batch, ratio)
        if stage == "train" and self.hparams.get("teacher_forcing_ratio", 1.0) < 1.0:
            self.log("train/teacher_forcing", ratio, on_step=True, batch_size=batch_size)
        rdrop = stage == "train" and self.hparams.get("rdrop_alpha", 0.0) > 0
        if rdrop:  # rows b and B + b are the same pair (same inputs) under two dropout masks
            batch = {k: torch.cat([batch[k], batch[k]]) for k in ("src", "src_mask", "tgt_out")}
            tgt_in = torch.cat([tgt_in, tgt_in])
        # validation logs the gap only (val/loss stays the plain loss, comparable across runs)
        contrast = stage != "test" and self.hparams.get("contrastive_weight", 0.0) > 0 and batch_size > 1
        if contrast:  # rows B + b: reply b after the context of pair b - 1 (the batch rolled by one row)
            src, mask = batch["src"], batch["src_mask"]
            other_src, other_mask = src.roll(1, 0), mask.roll(1, 0)
            valid = ((src != other_src) | (mask != other_mask)).any(1)  # (B,) the other context differs
            batch = {**batch, "src": torch.cat([src, other_src]), "src_mask": torch.cat([mask, other_mask])}
            tgt_in = torch.cat([tgt_in, tgt_in])
        tgt_out = batch["tgt_out"]  # (B, T)
        if not (rdrop or contrast):  # the plain loss: the (B*T, V) logits are never whole (translator/training/loss.py)
            features = self.model.features(batch["src"], batch["src_mask"], tgt_in)  # (B, T, D)
            out = self.model.out
            loss, nll = projected_smoothed_cross_entropy(features.flatten(0, 1), out.weight, out.bias,
                                                         tgt_out.flatten(), self.hparams.label_smoothing,
                                                         self.model.pad_id, fused=self.hparams.compile_loss)
        else:
            logits = self.model(batch["src"], batch["src_mask"], tgt_in)  # (B, T, V); R-Drop, contrast: (2B, T, V)
            if contrast:
                logits, other_logits = logits.chunk(2)  # (B, T, V) each
            flat_logits, flat_target = logits.flatten(0, 1), tgt_out.flatten()  # (B*T, V), (B*T,)
            # R-Drop: both copies have the same targets, so this mean is the mean of the two passes' losses
            loss, nll = label_smoothed_loss(flat_logits, flat_target, self.hparams.label_smoothing,
                                            self.model.pad_id, fused=self.hparams.compile_loss)
        if rdrop:
            first, second = flat_logits.chunk(2)  # (B*T, V) each
            kl = symmetric_kl(first, second, flat_target[:first.size(0)] != self.model.pad_id)
            loss = loss + self.hparams.rdrop_alpha * kl
            self.log("train/rdrop_kl", kl.detach(), on_step=True, batch_size=batch_size)
        if contrast:
            mi_loss, gap = contrastive_loss(logits, other_logits, tgt_out, self.model.pad_id, valid)
            if stage == "train":
                loss = loss + self.hparams.contrastive_weight * mi_loss
                self.log("train/contrastive", mi_loss.detach(), on_step=True, batch_size=batch_size)
            self.log(f"{stage}/context_gap", gap, on_step=stage == "train", on_epoch=stage != "train",
                     batch_size=batch_size, sync_dist=stage != "train")
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step,
                 batch_size=batch_size, sync_dist=not on_step)
        # Perplexity from the unsmoothed NLL of the same logits (the fused loss returns it for free).
        self.log(f"{stage}/ppl", nll.detach().exp(), on_step=on_step, on_epoch=not on_step,
                 batch_size=batch_size, sync_dist=not on_step)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        seconds = time.perf_counter() - self._step_start
        tokens = int(batch["src_mask"].sum()) + int((batch["tgt_out"] != self.model.pad_id).sum())
        self.log("train/tokens_per_s", tokens / max(seconds, 1e-9), prog_bar=True, on_step=True,
                 batch_size=batch["src"].size(0))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True,
                 batch_size=batch["src"].size(0))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "val")
        if self.hparams.val_bleu and self.tokenizer is not None:
            self._decode_for_bleu(batch)
        return loss

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    # ---- validation BLEU ---------------------------------------------------------------
    def _decode_for_bleu(self, batch: dict[str, Any]) -> None:
        from translator.decoding import DEFAULT_MAX_LEN, greedy_decode

        limit = self.hparams.val_bleu_max_sentences
        index = batch["index"]
        keep = torch.ones_like(index, dtype=torch.bool) if limit is None else index < limit  # (B,)
        if not bool(keep.any()):
            return
        batch = self._fit_to_model(batch)
        src, src_mask = batch["src"][keep], batch["src_mask"][keep]
        tok = self.tokenizer
        hyps = greedy_decode(self.model, src, src_mask, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id,
                             unk_id=tok.unk_id, max_len_a=self.hparams.val_max_len_a,
                             max_len_b=self.hparams.val_max_len_b,
                             max_len=getattr(self.model, "max_src_len", None) or DEFAULT_MAX_LEN)
        texts = tok.decode_tgt([h[0].tokens for h in hyps])
        kept = keep.nonzero().squeeze(-1).tolist()
        for j, text in zip(kept, texts):
            self._val_hyps.append((int(index[j]), text, batch["tgt_text"][j]))

    def on_validation_epoch_end(self) -> None:
        if not self.hparams.val_bleu or self.tokenizer is None:
            return
        pairs = self._val_hyps
        self._val_hyps = []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, pairs)
            pairs = [p for part in gathered for p in part]
        if not pairs:
            return
        import sacrebleu

        unique = dict((i, (h, r)) for i, h, r in pairs)  # DDP may repeat padded samples
        hyps = [unique[i][0] for i in sorted(unique)]
        refs = [unique[i][1] for i in sorted(unique)]
        bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
        self.log("val/bleu", bleu, prog_bar=True, sync_dist=False, rank_zero_only=False)

    # ---- optimisation ------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay = [], []
        for param in self.model.parameters():  # by shape, as nanoGPT: matrices decay; biases and norm gains do not
            if param.requires_grad:
                (no_decay if param.dim() < 2 else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr, betas=(0.9, self.hparams.adam_beta2), eps=1e-8,
        )
        total = 0
        if self.hparams.lr_schedule == "cosine":
            total = int(self.trainer.estimated_stepping_batches)
        hp = self.hparams

        def factor(step: int, anchor: tuple[int, float] | None) -> float:
            return resumed_lr_factor(step, lambda s: lr_factor(s, hp.warmup_steps, hp.lr_schedule, total), anchor,
                                     total)

        if self._resumed is not None:  # a resume: keep the learning rate continuous (translator.training.resume)
            previous = self._resumed["anchor"]
            self._anchor = schedule_anchor(self._resumed["scheduler"], factor, previous)
            if self._anchor is not None and self._anchor != previous:
                note(f"the run length changed ({total} optimizer steps now): the cosine schedule continues "
                               f"from the learning rate factor {self._anchor[1]:.4g} reached at step {self._anchor[0]} "
                               f"down to zero at step {total}")
            self._resumed = None
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, self._anchor))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _plain(value: Any) -> Any:
    """Keep only JSON-like data (what weights_only loading accepts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if _is_plain(v)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value if _is_plain(v)]
    return value


def _is_plain(value: Any) -> bool:
    if isinstance(value, (dict, list, tuple)):
        return True
    return value is None or isinstance(value, (str, int, float, bool))
