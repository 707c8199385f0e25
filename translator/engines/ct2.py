"""Decode an exported Transformer (translator/artifacts/export.py) with CTranslate2, behind the `Translator` API.

`CT2Model` is an `Engine` (translator/engines/base.py) and stands where a PyTorch model stands in a
`Bundle`: `Translator` tokenizes, truncates, batches, re-ranks, cuts the n-best, formats and keeps
the line alignment as for any checkpoint, and hands each batch of source ids to `CT2Model.search`,
which returns the same `Hypothesis` lists as `decoding.search`:

- every `DecodeConfig` option maps onto `ctranslate2.Translator.translate_batch`: greedy = beam 1,
  beam with `num_hypotheses` = beam_size (our ranking picks the n-best), sampling with top-k / top-p /
  temperature and `set_random_seed(seed)`, min_len, no_repeat_ngram_size, forbid_unk (disable_unk);
  pad and bos are suppressed as in the PyTorch decoders.
- scores: CTranslate2 divides the summed log-probs by length ** alpha (length with eos, which
  `return_end_token` keeps); we undo that and rank by our own GNMT penalty or `normalize`, so
  `score` and `normalized` mean what they mean in translator/decoding/. One difference: CTranslate2
  renormalises the log-probs over the tokens left after suppressing pad and bos, which the PyTorch
  decoders do not; a trained model gives those two ~0 mass, an untrained one shifts scores by ~1%.
- the per-sentence step limit `min(max_len, max(1, int(a * n + b)))`: a call uses its batch's
  largest limit and the (rare) sentences whose output ran past their own are decoded again with it.
- `score` (anti-LM re-ranking, `perplexity`) runs `score_batch` (teacher forcing in the engine).
- attention: the last decoder layer's cross-attention averaged over all heads (the export sets
  alignment_heads = heads), as in the PyTorch heatmap.
Not available here: the UTF-8 guard on byte pieces (CTranslate2 has no such constraint; the
SentencePiece decoder still turns an invalid byte run into U+FFFD, never into broken text).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from translator.artifacts.checkpoint import Bundle, export_meta
from translator.artifacts.export import require_ctranslate2
from translator.decoding import DEFAULT_MAX_LEN, DecodeConfig, Hypothesis, length_limit, length_penalty_of

#: --precision -> CTranslate2 compute type; fp32 (the default) keeps the type the model was exported with.
COMPUTE_TYPES = {"fp32": "default", "bf16": "bfloat16", "int8": "int8"}


class CT2Model:
    """An exported directory loaded into `ctranslate2.Translator` (plays the model's part in a Bundle)."""

    has_attention = True

    def __init__(self, path: str | Path, meta: dict[str, Any], tokenizer: Any, device: str = "cpu",
                 precision: str = "fp32", threads: int = 0):
        ct2 = require_ctranslate2()
        self.path, self.meta, self.tokenizer = Path(path), meta, tokenizer
        compute_type = COMPUTE_TYPES[precision]
        if compute_type != "default" and compute_type not in ct2.get_supported_compute_types(device):
            raise ValueError(f"precision {precision} ({compute_type}) is not supported by CTranslate2 on {device} here; "
                             f"supported: {', '.join(sorted(ct2.get_supported_compute_types(device)))}")
        threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or torch.get_num_threads()
        self._engine_args = dict(device=device, compute_type=compute_type, intra_threads=threads)
        self.engine = self._load_engine()
        self.compute_type = self.engine.compute_type
        self.threads = threads
        self.max_src_len = int(meta["model"]["init_args"].get("max_len") or DEFAULT_MAX_LEN)
        self.max_tgt_len: int | None = self.max_src_len  # learned positions: the same limit for the output
        self.precision = precision
        self.src_vocab = [tokenizer.src.id_to_piece(i) for i in range(tokenizer.src_vocab_size)]
        self.tgt_ids = {tokenizer.tgt.id_to_piece(i): i for i in range(tokenizer.tgt_vocab_size)}
        self._special = [[tokenizer.tgt.id_to_piece(tokenizer.pad_id)], [tokenizer.tgt.id_to_piece(tokenizer.bos_id)]]
        self.eos_piece = tokenizer.tgt.id_to_piece(tokenizer.eos_id)

    def _load_engine(self) -> Any:
        ct2 = require_ctranslate2()
        try:
            return ct2.Translator(str(self.path), **self._engine_args)
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"{self.path}: CTranslate2 cannot load this model: {str(err)[:200]}") from None

    @property
    def architecture(self) -> str:
        return f"Transformer (CTranslate2 {self.compute_type})"

    def config(self) -> dict[str, Any]:
        return dict(self.meta["model"])

    @classmethod
    def attention_note(cls, config: dict) -> str:
        return ("The heatmap shows the last decoder layer's cross-attention, averaged over heads "
                "(returned by CTranslate2).")

    @property
    def model(self) -> "CT2Model":
        """What it decodes with: itself (an `Engine`, translator/engines/base.py, that plays the model's part in a Bundle)."""
        return self

    def to(self, device: Any) -> "CT2Model":  # the engine's device is fixed at load
        return self

    def eval(self) -> "CT2Model":
        return self

    # ---- decoding ------------------------------------------------------------------------
    def search(self, batch: Sequence[Sequence[int]], config: DecodeConfig, return_attention: bool = False,
               on_step: Any = None) -> list[list[Hypothesis]]:
        """Source ids (one list per sentence, unpadded) -> `config.num_candidates` hypotheses per sentence,
        best first (see module doc); re-ranking and the n-best cut happen above the engine (`decoding.rank`).
        CTranslate2 returns whole hypotheses: `on_step` is never called."""
        limits = [length_limit(len(ids), config.max_len_a, config.max_len_b, config.max_len) for ids in batch]
        pieces = [[self.src_vocab[i] for i in ids] for ids in batch]
        results = self._translate(pieces, limits, max(limits), config, return_attention)
        redo = [i for i, hyps in enumerate(results) if any(len(h.tokens) + h.finished > limits[i] for h in hyps)]
        for limit in sorted({limits[i] for i in redo}):  # decode again with the sentence's own limit
            rows = [i for i in redo if limits[i] == limit]
            for i, hyps in zip(rows, self._translate([pieces[i] for i in rows], [limit] * len(rows), limit, config,
                                                     return_attention)):
                results[i] = hyps
        return results

    def _translate(self, pieces: list[list[str]], limits: list[int], max_steps: int, config: DecodeConfig,
                   return_attention: bool) -> list[list[Hypothesis]]:
        ct2 = require_ctranslate2()
        options: dict[str, Any] = dict(
            max_decoding_length=max_steps, min_decoding_length=config.min_len, max_input_length=0,
            no_repeat_ngram_size=config.no_repeat_ngram_size, disable_unk=config.forbid_unk,
            suppress_sequences=self._special, return_end_token=True, return_scores=True,
            return_attention=return_attention)
        alpha, engine = 0.0, self.engine  # CTranslate2 returns score / length ** alpha
        if config.method == "beam":
            alpha = 1.0 if config.normalize else float(config.length_penalty)
            options.update(beam_size=config.beam_size, num_hypotheses=config.beam_size, length_penalty=alpha)
        elif config.method == "sample":
            if config.seed is not None:
                # Each engine worker thread seeds its generator once, when it starts: a seeded call gets fresh
                # workers (a reload, ~10 ms for a small model) so that the same input and seed give the same output.
                ct2.set_random_seed(config.seed)
                engine = self._load_engine()
            options.update(beam_size=1, num_hypotheses=config.num_candidates, length_penalty=0.0,
                           sampling_topk=config.top_k, sampling_topp=config.top_p,
                           sampling_temperature=config.temperature)
        else:
            options.update(beam_size=1, num_hypotheses=1, length_penalty=0.0)
        try:
            outputs = engine.translate_batch(pieces, **options)
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"CTranslate2 decoding failed: {str(err)[:200]}") from None
        results = []
        for out in outputs:
            hyps = []
            for j, hyp in enumerate(out.hypotheses):
                finished = bool(hyp) and hyp[-1] == self.eos_piece
                tokens = [self.tgt_ids[p] for p in (hyp[:-1] if finished else hyp)]
                length = len(tokens) + finished
                score = float(out.scores[j]) * (max(length, 1) ** alpha if alpha else 1.0)
                att = None
                if return_attention and out.attention:
                    att = torch.tensor(out.attention[j], dtype=torch.float32)[:len(tokens)]  # (T_out, S)
                penalty = length_penalty_of(length, config.length_penalty, config.normalize)
                hyps.append(Hypothesis(tokens, score, score / penalty, finished, att))
            results.append(sorted(hyps, key=lambda h: -h.normalized)[:config.num_candidates])
        return results

    def score(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                  finished: Sequence[bool] | None = None) -> list[float]:
        """log p(target | source) per pair (eos included when `finished`, the default), by the engine."""
        finished = [True] * len(targets) if finished is None else finished
        tgt_vocab = {i: p for p, i in self.tgt_ids.items()}
        out = self.engine.score_batch([[self.src_vocab[i] for i in s] for s in sources],
                                      [[tgt_vocab[int(i)] for i in t] for t in targets], max_input_length=0)
        return [float(sum(r.log_probs if end else r.log_probs[:-1])) for r, end in zip(out, finished)]

    def step_scores(self, source: Sequence[int], tokens: Sequence[int],
                    finished: bool) -> tuple[list[float], list[float] | None]:
        """The log-probability of each token of one output by the engine (eos included when `finished`); the
        engine's scoring gives no attention, so None."""
        tgt_vocab = {i: p for p, i in self.tgt_ids.items()}
        out = self.engine.score_batch([[self.src_vocab[i] for i in source]], [[tgt_vocab[int(i)] for i in tokens]],
                                      max_input_length=0)[0]
        return [float(x) for x in (out.log_probs if finished else out.log_probs[:-1])], None


def load_exported(path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32",
                  threads: int = 0) -> Bundle:
    """A Bundle whose model is a CT2Model, from a directory written by `translator export`."""
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"CTranslate2 runs on cpu or cuda, not {device}")
    meta, tokenizer = export_meta(path)
    model = CT2Model(path, meta.export, tokenizer, device=device.type, precision=precision, threads=threads)
    return Bundle(model=model, tokenizer=tokenizer, meta=meta)  # type: ignore[arg-type]
