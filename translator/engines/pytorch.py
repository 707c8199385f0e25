"""`PyTorchEngine`: a `Seq2Seq` (an `Ensemble` included) decoded by translator/decoding/ on one torch device,
and `engine_of`, the engine that runs a bundle (the `Engine` protocol: translator/engines/base.py)."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from translator.artifacts.checkpoint import Bundle
from translator.cpu_fastpaths import cpu_bf16_is_fast
from translator.decoding.config import DEFAULT_MAX_LEN, DecodeConfig
from translator.decoding.scoring import sequence_log_probs, teacher_forced_steps
from translator.decoding.search import Hypothesis, search
from translator.engines.base import Engine, check_precision
from translator.engines.quantize import quantize_int8
from translator.models.base import Seq2Seq

def _is_recurrent(model: torch.nn.Module) -> bool:
    """Whether any module of `model` is an nn.LSTM / GRU / RNN."""
    return any(isinstance(m, torch.nn.RNNBase) for m in model.modules())


class PyTorchEngine:
    """A `Seq2Seq` (or an `Ensemble` of them) decoded by translator/decoding/ on one torch device.

    precision="bf16" decodes under bf16 autocast (faster on CPUs with AVX-512 bf16 and on GPUs;
    outputs can differ slightly from float32, so published scores use the fp32 default);
    precision="int8" decodes a dynamically int8-quantized copy (translator/engines/quantize.py; CPU only).
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
