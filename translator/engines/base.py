"""The `Engine` protocol: what `Translator` asks of an inference engine, and the precisions they run at."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from translator.decoding.config import DecodeConfig
from translator.decoding.search import Hypothesis

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
        every sampling step where the engine can stream (`decoding.search._sample_loop`), else never."""
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
