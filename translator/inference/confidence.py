"""Per-sentence confidence in [0, 1]: signals the model already has, combined by a small calibrator.

Signals (`sentence_signals`), each computed for one sentence on its own (its source alone in a batch of
one, its output scored by teacher forcing step by step), so that a sentence's confidence never depends on
the other sentences it was decoded with:

- `mean_logprob`: mean log-probability of the output's tokens (eos included when the output finished);
  `logprob_std`: their spread; `min_logprob`: the least likely token.
- `greedy_agreement`: token F1 between the output and the greedy decoding of the same source (1 when the
  search and the greedy path agree; a cheap stand-in for n-best agreement that needs one greedy pass).
- `length_ratio`: log((output tokens + 1) / (source tokens + 1)); `source_length`: log(source tokens).
- `coverage`: the share of source tokens that received at least half a unit of attention, summed over
  the output steps (1 for models whose decoder states carry no attention: a constant the calibrator ignores).

The calibrator (`Calibrator`) is a logistic regression on the standardized signals, fitted on a validation
split (`translator calibrate`) to predict whether a sentence reaches sentence-level chrF >= `chrf_threshold`:
a confidence of 0.8 means that about 8 in 10 such sentences reach it. It is plain data in the checkpoint.
The step-by-step scores come from the engine (`Engine.step_scores`; for PyTorch models
`translator.decoding.scoring.teacher_forced_steps`, through the model interface only).
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

SIGNALS = ("mean_logprob", "logprob_std", "min_logprob", "greedy_agreement", "length_ratio", "source_length",
           "coverage")
#: Default target of the calibrator: sentence chrF at or above this counts as a good translation.
CHRF_THRESHOLD = 50.0
FORMAT = 1


def token_f1(a: Sequence[int], b: Sequence[int]) -> float:
    """F1 of the token multisets of two outputs (1.0 for two empty outputs)."""
    if not a and not b:
        return 1.0
    common = sum((Counter(a) & Counter(b)).values())
    return 2.0 * common / (len(a) + len(b))


def sentence_signals(src_len: int, tokens: Sequence[int], log_probs: Sequence[float],
                     attention_mass: Sequence[float] | None, greedy_tokens: Sequence[int]) -> dict[str, float]:
    """The SIGNALS of one output from its per-token log-probabilities and attention mass (`Engine.step_scores`)
    and the greedy output of the same source."""
    lp = torch.tensor(list(log_probs) or [0.0], dtype=torch.float64)
    covered = (sum(m >= 0.5 for m in attention_mass) / max(len(attention_mass), 1)) if attention_mass else 1.0
    return {"mean_logprob": float(lp.mean()), "logprob_std": float(lp.std(unbiased=False)),
            "min_logprob": float(lp.min()), "greedy_agreement": token_f1(tokens, greedy_tokens),
            "length_ratio": math.log((len(tokens) + 1) / (src_len + 1)), "source_length": math.log(max(src_len, 1)),
            "coverage": float(covered)}


@dataclasses.dataclass
class Calibrator:
    """confidence = sigmoid(weights . (signals - mean) / scale + bias): P(sentence chrF >= chrf_threshold)."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    chrf_threshold: float = CHRF_THRESHOLD
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # where and how it was fitted (plain data)

    def __call__(self, signals: dict[str, float]) -> float:
        z = self.bias + sum(w * (signals[f] - m) / s
                            for f, m, s, w in zip(self.features, self.mean, self.scale, self.weights))
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    @classmethod
    def fit(cls, signals: Sequence[dict[str, float]], chrf: Sequence[float], chrf_threshold: float = CHRF_THRESHOLD,
            features: Sequence[str] = SIGNALS, l2: float = 1e-3, info: dict[str, Any] | None = None) -> "Calibrator":
        """Logistic regression (L2 `l2` on the weights, LBFGS in float64) of chrF >= threshold on `features`."""
        unknown = sorted(set(features) - set(SIGNALS))
        if unknown or not features:
            raise ValueError(f"unknown confidence signal(s) {unknown or '(none given)'}; "
                             f"choose from {', '.join(SIGNALS)}")
        if len(signals) != len(chrf) or not signals:
            raise ValueError(f"{len(signals)} sentences' signals but {len(chrf)} chrF scores")
        x = torch.tensor([[s[f] for f in features] for s in signals], dtype=torch.float64)  # (N, F)
        y = torch.tensor([float(c >= chrf_threshold) for c in chrf], dtype=torch.float64)  # (N,)
        positives = int(y.sum())
        if positives in (0, len(y)):
            median = sorted(chrf)[len(chrf) // 2]
            raise ValueError(f"{'none' if positives == 0 else 'all'} of the {len(y)} sentences reach chrF "
                             f"{chrf_threshold:g} (median {median:.1f}), so there is nothing to calibrate; "
                             f"give a --chrf_threshold between the worst and the best sentence, e.g. {median:.0f}")
        mean, scale = x.mean(0), x.std(0, unbiased=False)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # a constant signal gets weight ~0
        z = (x - mean) / scale  # (N, F)
        w = torch.zeros(z.size(1), dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w * w).sum()
            value.backward()
            return value

        optimizer.step(loss)
        return cls(list(features), mean.tolist(), scale.tolist(), w.detach().tolist(), float(b.detach()),
                   float(chrf_threshold), dict(info or {}))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the checkpoint bundle (loads with weights_only=True)."""
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> "Calibrator":
        try:
            calibrator = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        except TypeError as err:
            raise ValueError(f"{source}: unreadable confidence calibrator ({err})") from None
        unknown = sorted(set(calibrator.features) - set(SIGNALS))
        lengths = {len(calibrator.features), len(calibrator.mean), len(calibrator.scale), len(calibrator.weights)}
        if unknown or len(lengths) != 1:
            raise ValueError(f"{source}: unreadable confidence calibrator (signals {unknown or calibrator.features})")
        return calibrator
