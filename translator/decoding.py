"""Greedy search, beam search and sampling over any model that speaks the Seq2Seq interface.

Every decoding option lives in `DecodeConfig` (one frozen dataclass: defaults, docs and
validation in one place); `decode(model, src, src_mask, config, ...)` is the one entry point that
the Translator, the Chatbot, `translate`, `evaluate`, the app and the benchmarks use.
`greedy_decode`, `beam_search` and `sample` are keyword shortcuts that build a DecodeConfig.

Decoders use only `model.encode`, `model.init_state`, `model.decode_step`, `DecoderState.select`,
`.expand` and `.attention`; they never ask which model they drive. Every function returns
`list[list[Hypothesis]]`: one list per source sentence, in input order, best first by
`Hypothesis.normalized` (greedy: exactly one hypothesis; beam: up to `nbest`; sampling:
`num_samples`).

Shared rules:
- Scores are sums of the model's log-probabilities (log-softmax of its logits, in float32).
  Banned tokens (pad and bos always, unk with `forbid_unk`, repeated n-grams with
  `no_repeat_ngram_size`) get -inf without renormalising the others.
- A sentence with `n` real source tokens is decoded for at most
  `min(max_len, max(1, int(max_len_a * n + max_len_b)))` steps (defaults 1.5, 10, 256), one
  token (possibly eos) per step. A hypothesis still open after the last step is returned as
  is with `finished=False`.
- Length for the penalty = scored steps = `len(tokens) + finished`. `normalized` is
  `score / ((5 + length) / 6) ** length_penalty` (GNMT), or `score / length` with `normalize`.
- Rows of finished sentences (and finished samples) are removed from the batch with
  `DecoderState.select`, so they stop costing compute. The hot path has no Python loop over
  rows and one or two host syncs per step; loops run only over hypotheses that just ended.
- `return_attention=True` gives each hypothesis its attention rows, reordered along with the
  beams; models whose states carry no attention (`state.attention` None) give None.
- Valid UTF-8 only: given the target vocabulary's byte pieces (`byte_values`, from
  `Tokenizer.tgt_byte_values`), a byte piece may only start a well-formed UTF-8 sequence or
  continue the open one, and nothing else (eos included) may interrupt it; an output cut at the
  length limit loses its incomplete last character. Byte-fallback pieces sampled alone are what
  made "펭\ufffd구이네요" before.
- `min_len` bans eos for the first `min_len` steps (a reply is never empty with min_len >= 1).
- Anti-LM re-ranking (Li et al. 2016, MMI-antiLM): with `lm_weight` or `length_bonus` set, the
  `candidates` hypotheses (beam n-best or samples) are re-ranked by
  `log p(r|c) - lm_weight * log p(r) + length_bonus * |r|`, where log p(r) is the same model
  scoring r after an empty context (`empty_source`, the `<sep>` token alone for chat models
  trained with context dropout) and |r| counts scored steps.
- MMI-bidi re-ranking (Li et al. 2016): with `backward_weight` beta set, the score adds
  `beta * log p(c|r)`, where p(c|r) is a backward model (trained on the same pairs reversed, one
  tokenizer) scoring the context after reading the reply (`backward_log_probs`), given to `rank`
  (or `decode`) by the caller that holds it.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math
import textwrap
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:  # the interface only; decoders never import a concrete model
    from translator.models.base import DecoderState, Seq2Seq

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
    """The attribute docstrings of a dataclass (the string literal under each field), by field name."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (a frozen or zipped install): options keep their names only
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


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


@dataclasses.dataclass
class Hypothesis:
    """One output sequence; `attention` (T_out, S_real) has a row per token of `tokens` and a
    column per real (non-pad) source token, or is None when not asked for / not available."""

    tokens: list[int]  # without bos and eos
    score: float  # raw sum of log-probs of tokens (+ eos when finished)
    normalized: float  # score after the length penalty: the ranking key
    finished: bool  # True when it ended with eos, False when cut at the maximum length
    attention: Tensor | None = None
    lm_score: float | None = None  # log p(tokens | empty context), set by anti-LM re-ranking
    backward_score: float | None = None  # log p(context | tokens) under a backward model, set for MMI-bidi


@dataclasses.dataclass
class _Setup:
    """Per-call options shared by the search loops."""

    bos_id: int
    eos_id: int
    banned: list[int]  # token ids that are never emitted
    no_repeat_ngram_size: int
    length_penalty: float
    normalize: bool
    return_attention: bool
    min_len: int = 0
    byte_values: Tensor | None = None  # (V,) byte value of each byte piece, -1 for other pieces

    def __post_init__(self) -> None:
        bv = self.byte_values
        if bv is not None:
            # Never valid where a character may start: continuation bytes and impossible lead bytes.
            never = ((bv >= 0x80) & (bv <= 0xC1)) | (bv >= 0xF5)
            self.start_banned = never.nonzero().squeeze(1)  # (N,)

    def penalty(self, length: int) -> float:
        return length_penalty_of(length, self.length_penalty, self.normalize)

    def log_probs(self, logits: Tensor, hist: Tensor) -> Tensor:
        """logits (R, V), hist (R, t) tokens so far -> log-probs (R, V) with banned tokens at -inf."""
        return self.ban(logits.float().log_softmax(-1), hist)  # (R, V)

    def top_log_probs(self, logits: Tensor, hist: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best allowed tokens of each row: log-probs and ids, (R, k) each.

        `log_probs(...).topk(k)`: the fused log-softmax kernel writes a new (R, V) tensor (so the caller's
        logits are never written) in fewer passes than logsumexp + clone did: 1.7 vs 4.6 ms at R = 64,
        22.8 vs 32.1 ms at R = 320, V = 8000 (one thread, this machine, shared).
        """
        x = self.ban(logits.float().log_softmax(-1), hist)  # (R, V)
        return x.topk(min(k, x.size(1)), dim=1)  # (R, k) each

    def ban(self, scores: Tensor, hist: Tensor) -> Tensor:
        """Set banned tokens (and, with no_repeat_ngram_size, repeated n-grams) to -inf in place.

        Rows inside an open UTF-8 sequence may only continue it (no other rule applies to them).
        """
        pending_rows, inside = None, None
        if self.byte_values is not None:
            pending, lo, hi = _utf8_next_byte(hist, self.byte_values)
            if bool(pending.any()):
                pending_rows = pending.nonzero().squeeze(1)  # (P,)
                bv = self.byte_values.to(scores.device)
                allowed = (bv[None, :] >= lo[pending_rows, None]) & (bv[None, :] <= hi[pending_rows, None])
                inside = scores.index_select(0, pending_rows).masked_fill(~allowed, -math.inf)  # (P, V)
            scores[:, self.start_banned.to(scores.device)] = -math.inf
        scores[:, self.banned] = -math.inf
        if hist.size(1) < self.min_len:
            scores[:, self.eos_id] = -math.inf
        n = self.no_repeat_ngram_size
        if n > 0 and hist.size(1) >= n:
            _ban_repeated_ngrams(scores, hist, n)
        if pending_rows is not None:
            scores[pending_rows] = inside
        return scores

    def complete(self, tokens: list[int]) -> list[int]:
        """`tokens` without a trailing incomplete UTF-8 byte sequence (an output cut at its length limit)."""
        if self.byte_values is None or not tokens:
            return tokens
        hist = torch.tensor([tokens[-4:]], dtype=torch.long)
        pending, _, _ = _utf8_next_byte(hist, self.byte_values)
        if not bool(pending[0]):
            return tokens
        values = self.byte_values[hist[0]].tolist()
        cut = len(tokens)
        for v in reversed(values):  # drop the continuation bytes and their lead byte
            cut -= 1
            if v >= 0xC2:
                break
        return tokens[:cut]


def length_penalty_of(length: int, length_penalty: float, normalize: bool) -> float:
    """The divisor that turns a raw score into `normalized` (see the module docstring), length = scored steps."""
    if normalize:
        return float(max(length, 1))
    if length_penalty == 0.0:
        return 1.0
    return ((5.0 + length) / 6.0) ** length_penalty


def length_limit(src_len: int, max_len_a: float, max_len_b: float, max_len: int) -> int:
    """Steps (eos included) a sentence of `src_len` real source tokens is decoded for at most."""
    return min(max_len, max(1, int(max_len_a * src_len + max_len_b)))


def _utf8_next_byte(hist: Tensor, byte_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each row of hist (R, t): whether it ends inside a UTF-8 sequence, and the allowed range
    [lo, hi] of the next byte, (R,) each. Only the last 3 tokens matter (sequences are <= 4 bytes)."""
    R, t = hist.shape
    k = min(3, t)
    lo = torch.full((R,), 0x80, dtype=torch.long)
    hi = torch.full((R,), 0xBF, dtype=torch.long)
    if k == 0:
        return torch.zeros(R, dtype=torch.bool), lo, hi
    last = byte_values.to(hist.device)[hist[:, t - k:]].cpu()  # (R, k) byte values, -1 = not a byte piece
    is_cont = (last >= 0x80) & (last <= 0xBF)
    cont = torch.zeros(R, dtype=torch.long)  # trailing continuation bytes
    run = torch.ones(R, dtype=torch.bool)
    for j in range(k - 1, -1, -1):
        run = run & is_cont[:, j]
        cont += run.long()
    lead_at = k - 1 - cont  # (R,) -1 = no lead byte in the window
    lead = last.gather(1, lead_at.clamp(min=0)[:, None]).squeeze(1).masked_fill(lead_at < 0, -1)
    need = (((lead >= 0xC2) & (lead <= 0xDF)).long() + 2 * ((lead >= 0xE0) & (lead <= 0xEF)).long()
            + 3 * ((lead >= 0xF0) & (lead <= 0xF4)).long())
    pending = need > cont
    first = cont == 0  # the byte after the lead has a narrower range for some leads (no overlongs, surrogates)
    lo = torch.where(first & (lead == 0xE0), 0xA0, torch.where(first & (lead == 0xF0), 0x90, lo))
    hi = torch.where(first & (lead == 0xED), 0x9F, torch.where(first & (lead == 0xF4), 0x8F, hi))
    return pending.to(hist.device), lo.to(hist.device), hi.to(hist.device)


def _ban_repeated_ngrams(lp: Tensor, hist: Tensor, n: int) -> None:
    """Set lp[r, x] = -inf when (last n-1 tokens of hist[r]) + x already occurs in hist[r]; in place."""
    windows = hist.unfold(1, n, 1)  # (R, t-n+1, n) every n-gram so far
    prefix = hist[:, hist.size(1) - n + 1:]  # (R, n-1) the n-gram being started now
    match = (windows[:, :, :-1] == prefix[:, None, :]).all(-1)  # (R, t-n+1); all() of empty = True
    vocab = lp.size(1)
    banned = windows[:, :, -1].masked_fill(~match, vocab)  # (R, t-n+1); column V is a dummy
    mask = torch.zeros(lp.size(0), vocab + 1, dtype=torch.bool, device=lp.device)
    mask.scatter_(1, banned, True)
    lp.masked_fill_(mask[:, :vocab], -math.inf)


def _start(model: "Seq2Seq", src: Tensor, src_mask: Tensor, setup: _Setup, max_len_a: float,
           max_len_b: float, max_len: int) -> tuple["DecoderState", list[int], list[Tensor]]:
    """Validate, encode, and return (initial state, per-sentence step limits, per-sentence masks)."""
    if src.dim() != 2 or src_mask.shape != src.shape:
        raise ValueError(f"src and src_mask must both be (B, S); got {tuple(src.shape)} and {tuple(src_mask.shape)}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    src_mask = src_mask.bool()
    src_lens = src_mask.sum(1).tolist()
    empty = [i for i, n in enumerate(src_lens) if n == 0]
    if empty:
        raise ValueError(f"source sentence(s) {empty} have no real tokens (src_mask all False)")
    limits = [length_limit(n, max_len_a, max_len_b, max_len) for n in src_lens]
    memory = model.encode(src, src_mask)
    state = model.init_state(memory, src_mask, need_attention=setup.return_attention)
    masks = list(src_mask.cpu()) if setup.return_attention else []
    return state, limits, masks


def _make_setup(config: DecodeConfig, bos_id: int, eos_id: int, pad_id: int, unk_id: int, return_attention: bool,
                byte_values: Tensor | None) -> _Setup:
    banned = {pad_id, bos_id} | ({unk_id} if config.forbid_unk else set())
    banned.discard(eos_id)  # some vocabularies reuse eos as bos; eos must stay reachable
    if byte_values is not None:
        byte_values = torch.as_tensor(byte_values, dtype=torch.long).cpu()
        if not bool((byte_values >= 0).any()):
            byte_values = None  # no byte pieces: nothing to keep whole
    return _Setup(bos_id, eos_id, sorted(banned), config.no_repeat_ngram_size, float(config.length_penalty),
                  config.normalize, return_attention, config.min_len, byte_values)


def _hyp(setup: _Setup, tokens: list[int], score: float, finished: bool, att: Tensor | None,
         mask: Tensor | None) -> Hypothesis:
    """Build a Hypothesis; att (T_out, S) is cut to the sentence's real source tokens."""
    if not finished:
        tokens = setup.complete(tokens)
    if att is not None:
        att = att[:len(tokens), mask.to(att.device)].cpu()  # (T_out, S_real)
    return Hypothesis(tokens, score, score / setup.penalty(len(tokens) + finished), finished, att)


def _append(hist: Tensor, att: Tensor | None, rows: Tensor | None, tok: Tensor,
            step_att: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Reorder histories by rows (None = keep) and append this step's tokens (R,) / attention (R, S)."""
    if rows is not None:
        hist = hist.index_select(0, rows)
        att = None if att is None else att.index_select(0, rows)
    hist = torch.cat([hist, tok[:, None]], 1)  # (R, t+1)
    if att is not None:
        att = torch.cat([att, step_att[:, None].float()], 1)  # (R, t+1, S)
    return hist, att


def _cannot_improve(setup: _Setup, finished: list[Hypothesis], best_live: float, t: int, limit: int,
                    nbest: int) -> bool:
    """Whether no descendant of a live hypothesis (best raw score best_live after step t) can enter the n-best.

    Log-probs are <= 0, so a live raw score s <= 0 only falls, and a descendant finishes with a
    length between t + 2 and limit; s / penalty(length) is therefore at most s / max(penalty) over
    that range (penalty is monotonic: check both ends). Exact for raw scores, conservative otherwise.
    """
    if not finished:
        return False
    if best_live == -math.inf:
        return True  # every beam is dead (all continuations banned)
    if len(finished) < nbest:
        return False
    bound = best_live / max(setup.penalty(t + 2), setup.penalty(limit))
    worst = sorted(h.normalized for h in finished)[-nbest]  # the n-best's last entry
    return bound < worst


def _beam_loop(model: "Seq2Seq", src: Tensor, src_mask: Tensor, setup: _Setup, beam_size: int, nbest: int,
               max_len_a: float, max_len_b: float, max_len: int, trace: list | None = None) -> list[list[Hypothesis]]:
    """Beam search over all sentences at once; rows are (active sentence, beam), B_active * K.

    `trace`, when a list, gets one dict per step: the live beams of each active sentence (tokens so
    far, raw scores, parent beam) and the hypotheses that ended with eos (the lab's beam view).
    """
    K = beam_size
    state, limits, masks = _start(model, src, src_mask, setup, max_len_a, max_len_b, max_len)
    B, dev = src.size(0), src.device
    sent = list(range(B))  # original index of each active sentence
    results: list[list[Hypothesis]] = [[] for _ in range(B)]
    tokens = torch.full((B,), setup.bos_id, dtype=torch.long, device=dev)  # one row per sentence until step 0 ran
    scores = torch.zeros(B, K, device=dev)
    scores[:, 1:] = -math.inf  # all beams start identical: only the first one is live
    hist = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    att: Tensor | None = None
    rank = torch.arange(2 * K, device=dev)
    for t in range(max(limits)):
        logits, state = model.decode_step(tokens, state)
        Ba = len(sent)
        # The 2K best of all K*V continuations are among the 2K best of each beam: rank only those.
        if t == 0 and K > 1:
            # The K beams start identical, so the first step ran once per sentence (B rows, not B*K: as
            # CTranslate2 does); now each sentence's K beams become one group (models/base.py).
            state = state.expand(K)
            row_lp, row_tok = (x.repeat_interleave(K, 0) for x in setup.top_log_probs(logits, hist[::K], 2 * K))
        else:
            row_lp, row_tok = setup.top_log_probs(logits, hist, 2 * K)  # (Ba*K, 2K) each
        if t == 0 and setup.return_attention and state.attention is not None:
            att = torch.zeros(Ba * K, 0, state.attention.size(1), device=dev)
        W = row_lp.size(1)
        cand = (scores.view(-1, 1) + row_lp).view(Ba, K * W)  # (Ba, K*W)
        top_s, top_i = cand.topk(2 * K, dim=1)  # (Ba, 2K): at most K are eos, so >= K continue
        top_row = top_i // W + torch.arange(Ba, device=dev)[:, None] * K  # (Ba, 2K) flat parent row
        top_tok = row_tok.view(Ba, K * W).gather(1, top_i)
        is_eos = top_tok == setup.eos_id
        # An eos ranked among the first K ends a hypothesis; the first K non-eos stay live.
        fin = is_eos & (rank < K) & top_s.isfinite()
        order = (is_eos.long() * 2 * K + rank).topk(K, dim=1, largest=False).indices  # (Ba, K)
        live_s, live_row, live_tok = top_s.gather(1, order), top_row.gather(1, order), top_tok.gather(1, order)

        fin_nz = fin.nonzero()  # (F, 2) (sentence, rank) of hypotheses ending now
        fin_idx = fin_nz.tolist()  # the one host sync every step (plus best_live below)
        if fin_idx:
            rows = top_row[fin_nz[:, 0], fin_nz[:, 1]]  # (F,)
            fin_tokens = hist.index_select(0, rows).tolist()
            fin_scores = top_s[fin_nz[:, 0], fin_nz[:, 1]].tolist()
            fin_att = None if att is None else att.index_select(0, rows)
            for n, (i, _) in enumerate(fin_idx):
                s = sent[i]
                a = None if fin_att is None else fin_att[n]
                results[s].append(_hyp(setup, fin_tokens[n], fin_scores[n], True, a, masks[s] if masks else None))

        flat_rows = live_row.view(-1)  # (Ba*K,)
        step_att = None if att is None else state.attention.index_select(0, flat_rows)
        hist, att = _append(hist, att, flat_rows if K > 1 else None, live_tok.view(-1),
                            step_att)  # (Ba*K, t+1)
        if trace is not None:
            ended = [{"sentence": sent[i], "tokens": fin_tokens[n], "score": fin_scores[n]}
                     for n, (i, _) in enumerate(fin_idx)] if fin_idx else []
            trace.append({"step": t, "sentences": list(sent), "beams": hist.view(Ba, K, -1).tolist(),
                          "scores": live_s.tolist(), "parents": (live_row % K).tolist(), "finished": ended})

        # Done: K hypotheses finished (the usual beam rule, which keeps width 1 greedy), no live one
        # can still enter the n-best, or the last step (then open beams are returned unfinished).
        best_live = live_s.max(1).values.tolist() if any(results[s] for s in sent) else None
        done = set()
        for i, s in enumerate(sent):
            if len(results[s]) >= K:
                done.add(i)
            elif t + 1 >= limits[s]:
                done.add(i)
                live_scores, rows_i = live_s[i].tolist(), hist[i * K:(i + 1) * K].tolist()
                for j in range(K):
                    if math.isfinite(live_scores[j]):  # -inf rows are dead beams, not hypotheses
                        a = None if att is None else att[i * K + j]
                        results[s].append(_hyp(setup, rows_i[j], live_scores[j], False, a,
                                               masks[s] if masks else None))
            elif best_live is not None and _cannot_improve(setup, results[s], best_live[i], t, limits[s], nbest):
                done.add(i)
        scores, tokens = live_s, live_tok.view(-1)
        if done:
            keep = [i for i in range(len(sent)) if i not in done]
            if not keep:
                break
            sent = [sent[i] for i in keep]
            keep_t = torch.tensor(keep, device=dev)
            keep_rows = (keep_t[:, None] * K + torch.arange(K, device=dev)).view(-1)  # (Ba'*K,)
            scores, tokens = scores.index_select(0, keep_t), tokens.index_select(0, keep_rows)
            hist = hist.index_select(0, keep_rows)
            att = None if att is None else att.index_select(0, keep_rows)
            state = state.select(flat_rows.index_select(0, keep_rows))  # whole groups: the grouping stays
        elif K > 1:
            state = state.select(flat_rows)  # beams move within their sentences: source fields stay as they are
    return [sorted(r, key=lambda h: -h.normalized)[:nbest] for r in results]


def filter_logits(x: Tensor, top_k: int, top_p: float) -> Tensor:
    """Keep the top_k best tokens and the smallest set whose probability reaches top_p; x (R, V)."""
    if 0 < top_k < x.size(1):
        kth = x.topk(top_k, dim=1).values[:, -1:]  # (R, 1)
        x = x.masked_fill(x < kth, -math.inf)
    if top_p < 1.0:
        sorted_x, idx = x.sort(dim=1, descending=True)  # (R, V)
        probs = sorted_x.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches top_p
        x = x.masked_fill(drop.scatter(1, idx, drop), -math.inf)
    return x


def sampling_distribution(log_probs: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """What sampling draws the next token from: softmax(log_probs / temperature) cut to the top_k
    best and to the nucleus of mass top_p, renormalised; log_probs (R, V) -> probs (R, V)."""
    return filter_logits(log_probs / temperature, top_k, top_p).softmax(-1)


def _sample_loop(model: "Seq2Seq", src: Tensor, src_mask: Tensor, setup: _Setup, num_samples: int,
                 temperature: float, top_k: int, top_p: float, generator: torch.Generator | None,
                 max_len_a: float, max_len_b: float, max_len: int,
                 on_step: Callable[[list[int], list[list[int]]], None] | None = None) -> list[list[Hypothesis]]:
    """Ancestral sampling; rows are independent samples, num_samples per sentence, dropped as they end.

    `on_step(samples, tokens)`, when given, is called after every step with the live samples (index
    sentence * num_samples + j) and their tokens so far (a sample that just ended ends with eos).
    """
    state, limits, masks = _start(model, src, src_mask, setup, max_len_a, max_len_b, max_len)
    B, dev = src.size(0), src.device
    row_sent = torch.arange(B, device=dev).repeat_interleave(num_samples)  # (R,)
    if num_samples > 1:
        state = state.expand(num_samples)  # a sentence's samples are one group until the first one ends
    row_limit = torch.tensor(limits, device=dev).index_select(0, row_sent)  # (R,)
    results: list[list[Hypothesis]] = [[] for _ in range(B)]
    tokens = torch.full((B * num_samples,), setup.bos_id, dtype=torch.long, device=dev)
    scores = torch.zeros(B * num_samples, device=dev)
    hist = torch.zeros(B * num_samples, 0, dtype=torch.long, device=dev)
    sample_id = torch.arange(B * num_samples, device=dev)  # (R,) which sample each row is, for on_step
    att: Tensor | None = None
    for t in range(max(limits)):
        logits, state = model.decode_step(tokens, state)
        lp = setup.log_probs(logits, hist)  # (R, V)
        if t == 0 and setup.return_attention and state.attention is not None:
            att = torch.zeros(lp.size(0), 0, state.attention.size(1), device=dev)
        probs = sampling_distribution(lp, temperature, top_k, top_p)  # (R, V)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (R,)
        scores = scores + lp.gather(1, tokens[:, None]).squeeze(1)  # the model's log-prob, not the tempered one
        hist, att = _append(hist, att, None, tokens, None if att is None else state.attention)
        if on_step is not None:
            on_step(sample_id.tolist(), hist.tolist())
        is_eos = tokens == setup.eos_id
        ended = (is_eos | (row_limit <= t + 1)).nonzero().squeeze(1)
        ended_list = ended.tolist()  # the one host sync every step
        if not ended_list:
            continue
        sents, eos_flags = row_sent[ended].tolist(), is_eos[ended].tolist()
        seqs, seq_scores = hist.index_select(0, ended).tolist(), scores.index_select(0, ended).tolist()
        for n, r in enumerate(ended_list):
            s, fin = sents[n], eos_flags[n]
            toks = seqs[n][:-1] if fin else seqs[n]
            a = None if att is None else att[r, :len(toks)]
            results[s].append(_hyp(setup, toks, seq_scores[n], fin, a, masks[s] if masks else None))
        if len(ended_list) == tokens.size(0):
            break
        keep = (row_limit > t + 1).logical_and_(~is_eos).nonzero().squeeze(1)  # (R',)
        state = state.select(keep)
        tokens, scores, row_sent, row_limit, sample_id = (x.index_select(0, keep) for x in (tokens, scores, row_sent,
                                                                                          row_limit, sample_id))
        hist = hist.index_select(0, keep)
        att = None if att is None else att.index_select(0, keep)
    return [sorted(r, key=lambda h: -h.normalized) for r in results]


# ---- anti-LM re-ranking ------------------------------------------------------------------------

@torch.inference_mode()
def sequence_log_probs(model: "Seq2Seq", src: Tensor, src_mask: Tensor, outputs: list[list[int]], *, bos_id: int,
                       eos_id: int, pad_id: int, finished: list[bool] | None = None,
                       batch_size: int = 256) -> list[float]:
    """log p(output_i | src_i) by teacher forcing (`model.forward`); src (N, S) one row per output.

    An output scores its tokens plus eos when `finished[i]` (the default), as the decoders do.
    """
    finished = [True] * len(outputs) if finished is None else finished
    scores: list[float] = []
    for start in range(0, len(outputs), batch_size):
        chunk = outputs[start:start + batch_size]
        ends = finished[start:start + batch_size]
        width = max(len(o) + 1 for o in chunk)
        tgt_in = torch.full((len(chunk), width), pad_id, dtype=torch.long, device=src.device)
        tgt_out = torch.full((len(chunk), width), pad_id, dtype=torch.long, device=src.device)
        for row, (toks, end) in enumerate(zip(chunk, ends)):
            tgt_in[row, :len(toks) + 1] = torch.tensor([bos_id, *toks], dtype=torch.long)
            target = [*toks, eos_id] if end else list(toks)
            tgt_out[row, :len(target)] = torch.tensor(target, dtype=torch.long)
        logits = model(src[start:start + batch_size], src_mask[start:start + batch_size], tgt_in)  # (N, T, V)
        lp = logits.float().log_softmax(-1).gather(2, tgt_out.unsqueeze(-1)).squeeze(-1)  # (N, T)
        scores += lp.masked_fill(tgt_out == pad_id, 0.0).sum(1).tolist()
    return scores


def rank(results: list[list[Hypothesis]], config: DecodeConfig,
         score: Callable[[list[list[int]], list[list[int]], list[bool]], list[float]] | None = None,
         empty_source: Sequence[int] | None = None,
         backward: Callable[[list[list[int]], list[list[int]]], list[float]] | None = None,
         contexts: Sequence[Sequence[int]] | None = None) -> list[list[Hypothesis]]:
    """What every engine's candidates go through once: re-ranking when `config.reranks` (anti-LM: log p(r)
    from `score(sources, targets, finished)` after `empty_source`; MMI-bidi: log p(c|r) from
    `backward(contexts, replies)`, contexts[i] the source ids of sentence i), then the n-best cut."""
    if config.reranks:
        flat = [h for hyps in results for h in hyps]
        if config.lm_weight != 0.0 and flat:
            if not empty_source or score is None:
                raise ValueError("anti-LM re-ranking (lm_weight > 0) needs the empty-context source of a chat model "
                                 "trained with context dropout")
            lm = score([list(empty_source)] * len(flat), [h.tokens for h in flat], [h.finished for h in flat])
            for h, s in zip(flat, lm):
                h.lm_score = s
        if config.backward_weight != 0.0 and flat:
            if backward is None or contexts is None:
                raise ValueError("MMI-bidi re-ranking (backward_weight > 0) needs a backward model of "
                                 "p(message | reply): give --backward CKPT")
            pairs = [(list(contexts[i]), h) for i, hyps in enumerate(results) for h in hyps]
            for (_, h), s in zip(pairs, backward([c for c, _ in pairs], [h.tokens for _, h in pairs])):
                h.backward_score = s
        results = apply_rerank(results, config)
    return [hyps[:config.nbest] for hyps in results]


def apply_rerank(results: list[list[Hypothesis]], config: DecodeConfig) -> list[list[Hypothesis]]:
    """Set `normalized` = score + backward_weight * backward_score - lm_weight * lm_score + length_bonus * |r|
    (each score already set, or 0) and re-sort."""
    for hyps in results:
        for h in hyps:
            h.normalized = rerank_score(h.score, h.backward_score, h.lm_score, len(h.tokens) + h.finished, config)
    return [sorted(hyps, key=lambda h: -h.normalized) for hyps in results]


def rerank_score(forward: float, backward: float | None, lm: float | None, length: int, config: DecodeConfig) -> float:
    """log p(r|c) + beta * log p(c|r) - lambda * log p(r) + gamma * |r|; a term whose score is None (or whose
    weight is 0) counts 0. The one formula of the re-ranking score (decoding, evaluate's hits@1, the app)."""
    total = forward - (config.lm_weight * lm if lm is not None else 0.0)
    if config.backward_weight and backward is not None:
        total += config.backward_weight * backward
    return total + config.length_bonus * length


def backward_log_probs(backward: "Seq2Seq", contexts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]], *,
                       bos_id: int, eos_id: int, pad_id: int, batch_size: int = 256) -> list[float]:
    """log p(context_i | reply_i) under a backward model (source = the reply, target = the context, eos
    included), by teacher forcing in length-sorted batches; -inf for an empty reply (nothing to read).

    Ids are of one shared tokenizer (the backward model reads the forward model's vocabulary).
    """
    scores = [-math.inf] * len(replies)
    order = sorted((i for i, r in enumerate(replies) if r), key=lambda i: (len(replies[i]), len(contexts[i])))
    device = next(itertools.chain(backward.parameters(), backward.buffers()), torch.empty(0)).device
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(replies[i]) for i in rows)
        src = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for row, i in enumerate(rows):
            src[row, :len(replies[i])] = torch.tensor(list(replies[i]), dtype=torch.long)
        src = src.to(device)
        out = sequence_log_probs(backward, src, src != pad_id, [list(contexts[i]) for i in rows], bos_id=bos_id,
                                 eos_id=eos_id, pad_id=pad_id, batch_size=batch_size)
        for i, s in zip(rows, out):
            scores[i] = s
    return scores


# ---- public entry points -----------------------------------------------------------------------

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


def search(model: "Seq2Seq", src: Tensor, src_mask: Tensor, config: DecodeConfig | None = None, *, bos_id: int,
           eos_id: int, pad_id: int, unk_id: int, byte_values: Tensor | None = None, return_attention: bool = False,
           trace: list | None = None, on_step: Callable[[list[int], list[list[int]]], None] | None = None,
           **options: Any) -> list[list[Hypothesis]]:
    """The search of `decode` alone: `config.num_candidates` hypotheses per sentence, best first by
    `normalized`, before re-ranking and the n-best cut (`rank`). `on_step`: see `_sample_loop`."""
    config = decode_config(config, **options)
    setup = _make_setup(config, bos_id, eos_id, pad_id, unk_id, return_attention, byte_values)
    with torch.inference_mode():
        if config.method == "sample":
            generator = None
            if config.seed is not None:
                generator = torch.Generator(device=src.device)
                generator.manual_seed(config.seed)
            return _sample_loop(model, src, src_mask, setup, config.num_candidates, config.temperature,
                                config.top_k, config.top_p, generator, config.max_len_a, config.max_len_b,
                                config.max_len, on_step)
        width = config.beam_size if config.method == "beam" else 1
        return _beam_loop(model, src, src_mask, setup, width, config.num_candidates if width > 1 else 1,
                          config.max_len_a, config.max_len_b, config.max_len, trace)


def decode(model: "Seq2Seq", src: Tensor, src_mask: Tensor, config: DecodeConfig | None = None, *, bos_id: int,
           eos_id: int, pad_id: int, unk_id: int, byte_values: Tensor | None = None,
           empty_source: Sequence[int] | None = None, return_attention: bool = False, trace: list | None = None,
           on_step: Callable[[list[int], list[list[int]]], None] | None = None, backward: "Seq2Seq | None" = None,
           **options: Any) -> list[list[Hypothesis]]:
    """Decode src (B, S) with mask (B, S) (True = real token) as `config` says; best first per sentence.

    `options` are DecodeConfig fields, applied over `config` (or the defaults): a shortcut for
    `decode(..., DecodeConfig(method="beam", beam_size=4))`. `byte_values` (V,) keeps byte pieces
    in whole UTF-8 characters; `empty_source` (ids) is the context for anti-LM re-ranking; `trace`
    (a list) records every step of greedy / beam search (see `_beam_loop`); `on_step` sees every step
    of sampling (see `_sample_loop`: what a streaming reply shows while it is generated); `backward`
    (a model of p(source | output) on the same vocabulary) scores MMI-bidi re-ranking. `search` then `rank`.
    """
    config = decode_config(config, **options)
    results = search(model, src, src_mask, config, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, unk_id=unk_id,
                     byte_values=byte_values, return_attention=return_attention, trace=trace, on_step=on_step)

    def score(sources: list[list[int]], targets: list[list[int]], finished: list[bool]) -> list[float]:
        ids = torch.tensor(sources, dtype=torch.long, device=src.device)
        return sequence_log_probs(model, ids, torch.ones_like(ids, dtype=torch.bool), targets, bos_id=bos_id,
                                  eos_id=eos_id, pad_id=pad_id, finished=finished)

    def backward_score(contexts: list[list[int]], replies: list[list[int]]) -> list[float]:
        return backward_log_probs(backward, contexts, replies, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)

    contexts = [row[m].tolist() for row, m in zip(src, src_mask.bool())]
    return rank(results, config, score, empty_source, backward_score if backward is not None else None, contexts)


def greedy_decode(model: "Seq2Seq", src: Tensor, src_mask: Tensor, **options: Any) -> list[list[Hypothesis]]:
    """`decode` with method greedy: the most likely token at every step (beam search of width 1).

    Keyword options are DecodeConfig fields plus decode's (bos_id, ..., return_attention).
    """
    return decode(model, src, src_mask, method="greedy", **options)


def beam_search(model: "Seq2Seq", src: Tensor, src_mask: Tensor, **options: Any) -> list[list[Hypothesis]]:
    """`decode` with method beam.

    Every step keeps the K best non-eos continuations per sentence; an eos among the K best
    candidates moves that hypothesis to the sentence's finished list. A sentence is done when K
    hypotheses have finished (the usual rule, which makes beam_size=1 greedy), at its last step
    (open beams are returned unfinished), or early, once it has `nbest` finished hypotheses and
    no live one can beat the worst of them. Since log-probs are <= 0 a live raw score s can only
    fall, so its descendants' normalized score is at most s / max(penalty(len)) over the lengths
    still reachable: exact for raw scores, conservative with a length penalty. Returns up to
    `nbest` hypotheses per sentence, best first by `normalized`.
    """
    return decode(model, src, src_mask, method="beam", **options)


def sample(model: "Seq2Seq", src: Tensor, src_mask: Tensor, *, num_samples: int | None = None,
           **options: Any) -> list[list[Hypothesis]]:
    """`decode` with method sample; `num_samples` (= nbest) outputs per sentence.

    Tokens come from softmax(log_probs / temperature), restricted to the `top_k` best (0 = all)
    and to the nucleus of mass `top_p`. `seed` makes a call reproducible (same inputs, same
    batch); None uses torch's global generator. `score` is the model's own log-prob of the
    sample (before temperature). Samples are sorted best first by `normalized`.
    """
    if num_samples is not None:
        options["nbest"] = num_samples
    return decode(model, src, src_mask, method="sample", **options)
