"""Every decoding option once: `DecodeConfig` (defaults, docs, bounds as field metadata, validation), the
CLI's `DecodeOptions` generated from it, the chat defaults and `decode_config`, the one merge of options."""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any, Literal

from docstring_parser import parse_from_object

METHODS = ("greedy", "beam", "sample")
#: Longest output, and longest source fed to a model without a position limit of its own (the RNNs), in tokens.
DEFAULT_MAX_LEN = 256


def _option(default: Any, *, low: int | None = None, serve: tuple[float, float] | None = None,
            label: str = "") -> Any:
    """A DecodeConfig field with its bounds in the field's metadata (the one place they are typed):
    `low` the least valid integer (checked in __post_init__), `serve` the (low, high) range one request
    to the app or the service may ask for (sliders, request validation; a cost cap), `label` its name
    in the messages and the UI."""
    metadata = {k: v for k, v in (("low", low), ("serve", serve), ("label", label)) if v not in (None, "")}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """Every decoding option, with the one set of defaults (translation: beam 5, GNMT alpha 1.0).

    Chat checkpoints default to `CHAT_DECODING` instead (chosen on the validation splits, see
    benchmarks/chat.py). Invalid values raise one ValueError naming the option.
    """

    method: Literal["greedy", "beam", "sample"] = "beam"
    """Search: greedy (most likely token each step), beam (beam search) or sample (ancestral sampling)."""
    beam_size: int = _option(5, low=1, serve=(1, 16), label="beam size")
    """Beams per sentence (method=beam)."""
    length_penalty: float = 1.0
    """GNMT length-penalty alpha: score / ((5 + length) / 6) ** alpha ranks hypotheses (0 = raw log-prob)."""
    normalize: bool = False
    """Rank by score / length (average log-prob per step) instead of the GNMT penalty."""
    nbest: int = _option(1, low=1)
    """Hypotheses returned per input, best first (beam: at most beam_size)."""
    candidates: int = _option(0, low=0, serve=(1, 32), label="number of candidates")
    """Hypotheses searched before ranking: samples drawn, or the beam's n-best (capped at beam_size; greedy: 1); 0 = nbest."""
    temperature: float = _option(1.0, serve=(0.05, 5.0), label="temperature")
    """Sampling temperature (method=sample); below 1 sharpens, above 1 flattens."""
    top_k: int = _option(0, low=0, serve=(0, 1000), label="top-k")
    """Sample among the k most likely tokens only (0 = no limit)."""
    top_p: float = _option(1.0, serve=(0.01, 1.0), label="top-p")
    """Nucleus sampling: sample within the smallest set of tokens whose probability reaches top_p."""
    seed: int | None = 0
    """Sampling seed: the same input and seed give the same output (null = torch's global generator)."""
    max_len_a: float = 1.5
    """Output length limit a * source tokens + b (steps, eos included)."""
    max_len_b: int = _option(10, low=0)
    """See max_len_a."""
    max_len: int = _option(DEFAULT_MAX_LEN, low=1)
    """Hard cap on output steps (the model's own position limit also applies)."""
    min_len: int = _option(0, low=0)
    """Steps before eos may be chosen (1 = never an empty output)."""
    no_repeat_ngram_size: int = _option(0, low=0, serve=(0, 10), label="no-repeat n-gram size")
    """Never repeat an n-gram of this many tokens within one output (0 = off)."""
    forbid_unk: bool = False
    """Never output <unk>."""
    lm_weight: float = _option(0.0, serve=(0.0, 2.0), label="anti-LM weight")
    """Anti-LM re-ranking weight lambda: subtract lambda * log p(reply | empty context) (0 = off; chat)."""
    length_bonus: float = 0.0
    """Re-ranking bonus gamma per output step: + gamma * length (0 = off)."""
    backward_weight: float = _option(0.0, serve=(0.0, 5.0), label="backward weight")
    """MMI-bidi weight beta: add beta * log p(context | reply) under a backward model (needs --backward; 0 = off; chat)."""

    def __post_init__(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"unknown decoding method {self.method!r}; choose one of: {', '.join(METHODS)}")
        for field in dataclasses.fields(self):
            if "low" not in field.metadata:
                continue
            name, low, value = field.name, field.metadata["low"], getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("length_penalty", "temperature", "top_p", "max_len_a", "lm_weight", "length_bonus",
                     "backward_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{name} must be a finite number, got {value!r}")
        if not problems:
            if self.temperature <= 0:
                problems.append(f"temperature must be > 0, got {self.temperature}")
            if not 0 < self.top_p <= 1:
                problems.append(f"top_p must be in (0, 1], got {self.top_p}")
            if self.max_len_a < 0:
                problems.append(f"max_len_a must be >= 0, got {self.max_len_a}")
            if self.lm_weight < 0:
                problems.append(f"lm_weight (the anti-LM lambda) must be >= 0, got {self.lm_weight}")
            if self.backward_weight < 0:
                problems.append(f"backward_weight (the MMI-bidi beta) must be >= 0, got {self.backward_weight}")
            if self.candidates and self.candidates < self.nbest:
                problems.append(f"candidates ({self.candidates}) cannot be fewer than nbest ({self.nbest})")
            if self.method == "greedy" and self.nbest > 1:
                problems.append("greedy search gives one hypothesis: nbest > 1 needs method beam or sample")
            if self.method == "beam" and self.nbest > self.beam_size:
                problems.append(f"nbest ({self.nbest}) cannot exceed beam_size ({self.beam_size})")
            if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
                problems.append(f"seed must be an integer or null, got {self.seed!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def num_candidates(self) -> int:
        """How many hypotheses the search produces before ranking (beam: at most beam_size; greedy: 1)."""
        wanted = max(self.candidates, self.nbest)
        if self.method == "greedy":
            return 1
        return min(wanted, self.beam_size) if self.method == "beam" else wanted

    @property
    def reranks(self) -> bool:
        """Whether hypotheses are re-ranked (anti-LM, length bonus or MMI-bidi score)."""
        return self.lm_weight != 0.0 or self.length_bonus != 0.0 or self.backward_weight != 0.0

    @staticmethod
    def served(name: str) -> tuple[Any, Any, str]:
        """(low, high, label) of an option that one request to the app or the service may set (field metadata)."""
        field = next((f for f in dataclasses.fields(DecodeConfig) if f.name == name), None)
        if field is None or "serve" not in field.metadata:
            raise KeyError(f"{name!r} is not a decoding option a request may set")
        low, high = field.metadata["serve"]
        return low, high, field.metadata["label"]

    def replace(self, **changes: Any) -> "DecodeConfig":
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """The options that apply to this method (for reports and tables)."""
        keep = {"greedy": (), "beam": ("beam_size", "length_penalty", "normalize"),
                "sample": ("temperature", "top_k", "top_p", "seed")}[self.method]
        out: dict[str, Any] = {"method": self.method}
        for field in dataclasses.fields(self):
            name = field.name
            if name in keep or (name in ("nbest", "candidates", "max_len_a", "max_len_b", "min_len",
                                         "no_repeat_ngram_size", "forbid_unk", "lm_weight", "length_bonus",
                                         "backward_weight")):
                out[name] = getattr(self, name)
        if not out.get("candidates"):
            out.pop("candidates", None)
        if not self.reranks:
            out.pop("lm_weight", None)
            out.pop("length_bonus", None)
        if not self.backward_weight:
            out.pop("backward_weight", None)
        return out


def _field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal under each field), by field name, read by
    docstring_parser, the parser jsonargparse reads attribute docstrings with; {} without source (a zipped install)."""
    return {p.arg_name: " ".join((p.description or "").split()) for p in parse_from_object(cls).params}


def _options_class() -> type:
    """DecodeOptions: every DecodeConfig field as an optional override (None = keep the default).

    Generated from DecodeConfig, so no option is typed twice; the CLI exposes it as --decode.FIELD
    with each field's docstring as its help.
    """
    hints = typing.get_type_hints(DecodeConfig)
    fields = [(f.name, typing.Optional[hints[f.name]], dataclasses.field(default=None)) for f in dataclasses.fields(DecodeConfig)]

    def overrides(self) -> dict[str, Any]:
        """The options that were given (not None)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    cls = dataclasses.make_dataclass("DecodeOptions", fields, frozen=True, namespace={"overrides": overrides})
    cls.__module__ = __name__
    docs = _field_docs(DecodeConfig)
    lows = {f.name: f.metadata["low"] for f in dataclasses.fields(DecodeConfig) if "low" in f.metadata}
    cls.__doc__ = ("Decoding options over the checkpoint's defaults (translation: beam 5, length penalty 1.0; "
                   "chat: CHAT_DECODING); an option left out keeps its default.\n\nArgs:\n"
                   + "".join(f"    {name}: {docs.get(name, '')}{f' (>= {lows[name]})' if name in lows else ''}\n"
                             for name, _, _ in fields))
    return cls


DecodeOptions = _options_class()


#: The default for chat checkpoints (Chatbot.reply, the app's Chat tab, `evaluate` on chat data):
#: nucleus sampling of 4 candidate replies, re-ranked by the anti-LM score with lambda 1 and a
#: length bonus of 1 per token. Chosen on the validation splits by benchmarks/chat.py
#: (benchmarks/RESULTS.md, "Chat"): on chatbot-ko it is the choice that meets the diversity
#: targets with the best chrF (distinct-2 114% of the references', generic share 2.4%, vs 32% for
#: 8 samples ranked with lambda 0.3); smaller lambdas (0-0.5) or likelihood ranking bring the
#: stock replies back, beam search most of all.
CHAT_DECODING = DecodeConfig(method="sample", temperature=0.8, top_p=0.9, candidates=4, min_len=1,
                             no_repeat_ngram_size=3, forbid_unk=True, lm_weight=1.0, length_bonus=1.0,
                             max_len_a=1.0, max_len_b=40, seed=0)

#: The default for a chat checkpoint decoding with a backward model (`--backward CKPT`): CHAT_DECODING's
#: candidates re-ranked by the MMI-bidi score log p(r|c) + beta * log p(c|r) - lambda * log p(r) + gamma * |r|
#: (Li et al. 2016). beta = 1 weighs both directions equally, as Li et al.'s MMI-bidi does, and won the
#: validation sweep on DailyDialog (`benchmarks/chat.py --betas 0.5 1 2`: chrF 10.90 vs 10.88 / 10.50;
#: benchmarks/RESULTS.md, "Chat that answers the message").
CHAT_BIDI_DECODING = CHAT_DECODING.replace(backward_weight=1.0)


def with_recipe(config: DecodeConfig, recipe: Mapping[str, Any] | None) -> DecodeConfig:
    """`config` with a recipe's decoding fields over it (`Seq2SeqSystem(decoding=...)`, recorded in the
    checkpoint); one ValueError naming an unknown field or a bad value."""
    if not recipe:
        return config
    if not isinstance(recipe, Mapping):
        raise ValueError(f"a recipe's decoding must be a mapping of DecodeConfig fields, got {recipe!r}")
    known = {f.name for f in dataclasses.fields(DecodeConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"unknown decoding option(s) {', '.join(map(repr, unknown))} in the recipe's decoding; "
                         f"known: {', '.join(sorted(known))}")
    return config.replace(**recipe)


#: Older keyword names of decoding options (before DecodeConfig), still accepted.
LEGACY_OPTION_NAMES = {"decoder": "method", "num_samples": "nbest"}


def decode_config(config: "DecodeConfig | Any | None" = None, default: DecodeConfig | None = None,
                  **options: Any) -> DecodeConfig:
    """The one merge of decoding options: `config` (a DecodeConfig, or DecodeOptions over `default`),
    else `default`, else DecodeConfig(); DecodeConfig fields in `options` are applied last.

    Accepts the older names `decoder` (= method) and `num_samples` (= nbest); unknown names and
    invalid values raise one ValueError.
    """
    base = default or DecodeConfig()
    if isinstance(config, DecodeOptions):
        options = {**config.overrides(), **options}
    elif config is not None:
        base = config
    if not options:
        return base
    renamed = {LEGACY_OPTION_NAMES.get(k, k): v for k, v in options.items()}
    fields = {f.name for f in dataclasses.fields(DecodeConfig)}
    unknown = sorted(set(renamed) - fields)
    if unknown:
        raise ValueError(f"unknown decoding option(s) {unknown}; DecodeConfig has: {', '.join(sorted(fields))}")
    return base.replace(**renamed)


