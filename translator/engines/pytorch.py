"""Inference engines: what runs a model's search and scoring for `Translator`, behind one protocol.

An engine turns batches of source ids into hypotheses (`search`) and scores given targets
(`score`); `Translator` holds one and never asks which. What every engine shares is done once,
above them, by `Translator` and `decoding.rank`: source truncation to `max_src_len`, the output
cap `max_tgt_len`, re-ranking (anti-LM, scored through `score`) and the n-best cut.

- `PyTorchEngine`: the decoders of translator/decoding.py over any `Seq2Seq` (an `Ensemble`
  included), with the precision rules (bf16 autocast, int8 dynamic quantization on the CPU).
- `CT2Model` (translator/ct2_engine.py): an exported directory run by CTranslate2.

A new engine implements `Engine` and is returned by `engine_of` for the bundles it runs.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from translator.checkpoint import Bundle
from translator.confidence import teacher_forced_steps
from translator.decoding import DEFAULT_MAX_LEN, DecodeConfig, Hypothesis, search, sequence_log_probs
from translator.models.base import Seq2Seq
from translator.quantize import quantize_int8
from translator.runtime import cpu_bf16_is_fast

PRECISIONS = ("fp32", "bf16", "int8")


class Engine(Protocol):
    """What `Translator` asks of an inference engine."""

    max_src_len: int  # longest source fed, in tokens (longer ones are truncated above the engine)
    max_tgt_len: int | None  # the model's own output position limit, None when it has none
    precision: str  # fp32, bf16 or int8, as it runs
    model: Any  # what it decodes with (a torch module; the engine itself for CTranslate2)

    def search(self, batch: Sequence[Sequence[int]], config: DecodeConfig, return_attention: bool = False,
               on_step: Callable[[list[int], list[list[int]]], None] | None = None) -> list[list[Hypothesis]]:
        """Source ids (one list per sentence, unpadded) -> `config.num_candidates` hypotheses per
        sentence, best first by `normalized`, before re-ranking and the n-best cut. `on_step` sees
        every sampling step where the engine can stream (`decoding._sample_loop`), else never."""
        ...

    def score(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
              finished: Sequence[bool] | None = None) -> list[float]:
        """log p(target | source) per pair by teacher forcing (eos included where `finished`, the default)."""
        ...

    def step_scores(self, source: Sequence[int], tokens: Sequence[int],
                    finished: bool) -> tuple[list[float], list[float] | None]:
        """One sentence alone (never its batch): the log-probability of each output token (eos included when
        `finished`) and the attention mass each source token received, None without attention (confidence)."""
        ...


def check_precision(precision: str) -> None:
    """One ValueError naming the choices when `precision` is not fp32, bf16 or int8."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")


def _is_recurrent(model: torch.nn.Module) -> bool:
    """Whether any module of `model` is an nn.LSTM / GRU / RNN."""
    return any(isinstance(m, torch.nn.RNNBase) for m in model.modules())


class PyTorchEngine:
    """A `Seq2Seq` (or an `Ensemble` of them) decoded by translator/decoding.py on one torch device.

    precision="bf16" decodes under bf16 autocast (faster on CPUs with AVX-512 bf16 and on GPUs;
    outputs can differ slightly from float32, so published scores use the fp32 default);
    precision="int8" decodes a dynamically int8-quantized copy (translator/quantize.py; CPU only).
    A recurrent model (LSTM, GRU, RNN) asked for bf16 on a CPU without native bf16 decodes in fp32,
    with a note: oneDNN has no bf16 recurrent primitive there (torch raises "could not create a
    primitive descriptor for the LSTM forward propagation primitive").
    """

    def __init__(self, model: Seq2Seq, tokenizer: Any, device: str | torch.device = "cpu", precision: str = "fp32"):
        check_precision(precision)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if precision == "bf16" and self.device.type == "cpu" and _is_recurrent(self.model) and not cpu_bf16_is_fast():
            print(f"translator: note: this CPU has no native bf16 and {type(self.model).__name__} is recurrent "
                  "(no bf16 LSTM/GRU kernel here), so --precision bf16 becomes fp32", file=sys.stderr)
            precision = "fp32"
        if precision == "int8":
            if self.device.type != "cpu":
                raise ValueError(f"precision int8 (dynamic quantization) runs on the CPU only, not {self.device}")
            self.model = quantize_int8(self.model)
        self.precision = precision
        self.tokenizer = tokenizer
        self.max_tgt_len = getattr(self.model, "max_src_len", None)  # learned positions stop there
        self.max_src_len = self.max_tgt_len or DEFAULT_MAX_LEN
        self.byte_values = tokenizer.tgt_byte_values()  # keeps byte pieces in whole UTF-8 characters

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def search(self, batch: Sequence[Sequence[int]], config: DecodeConfig, return_attention: bool = False,
               on_step: Callable[[list[int], list[list[int]]], None] | None = None) -> list[list[Hypothesis]]:
        tok = self.tokenizer
        src, src_mask = self.pad(batch)
        with self._autocast():
            return search(self.model, src, src_mask, config, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id,
                          unk_id=tok.unk_id, byte_values=self.byte_values, return_attention=return_attention,
                          on_step=on_step)

    def score(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
              finished: Sequence[bool] | None = None) -> list[float]:
        tok = self.tokenizer
        src, src_mask = self.pad(sources)
        with self._autocast():
            return sequence_log_probs(self.model, src, src_mask, [list(t) for t in targets], bos_id=tok.bos_id,
                                      eos_id=tok.eos_id, pad_id=tok.pad_id,
                                      finished=None if finished is None else list(finished))

    def step_scores(self, source: Sequence[int], tokens: Sequence[int],
                    finished: bool) -> tuple[list[float], list[float] | None]:
        tok = self.tokenizer
        with self._autocast():
            return teacher_forced_steps(self.model, source, tokens, finished, bos_id=tok.bos_id, eos_id=tok.eos_id,
                                        device=self.device)

    def pad(self, batch: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Right-pad to (B, S) ids and the (B, S) mask, True = real token."""
        width = max(len(ids) for ids in batch)
        src = torch.full((len(batch), width), self.tokenizer.pad_id, dtype=torch.long)
        for row, ids in enumerate(batch):
            src[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        return src.to(self.device), (src != self.tokenizer.pad_id).to(self.device)


def engine_of(bundle: Bundle, device: str | torch.device = "cpu", precision: str = "fp32") -> Engine:
    """The engine that runs `bundle`: PyTorchEngine for a `Seq2Seq` (ensembles included); a bundle loaded
    from an exported directory already holds its engine (`ct2_engine.load_exported`)."""
    if isinstance(bundle.model, Seq2Seq):
        return PyTorchEngine(bundle.model, bundle.tokenizer, device, precision)
    return bundle.model
