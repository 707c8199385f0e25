"""The Learn tab's service layer (no Gradio): each lab view for the app's loaded checkpoints.

Views that need only a model (params, positions, gates, attention, softmax, beam) run live on
the checkpoint the user picked, or on the first loaded one that fits the view; views that need
training or long decoding (gradients, exposure, bottleneck) show the JSON a `translator lab`
run wrote (benchmarks/lab/ by default), redrawn with the lab's own `figure`. Every problem a user
can fix raises `UserError`; every field has a size limit (`check`, run before a request is queued), and
each view is made on the app's shared decoding workers, within its time limit (`TranslatorService.run`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from translator.lab import attention, beam, bottleneck, exposure, gates, gradients, params, positions, softmax
from translator.models.base import Seq2Seq
from translator.serve.service import ModelRegistry, TranslatorService, UserError, check_field, served

#: Where `translator lab ... --output benchmarks/lab/NAME.png` leaves its JSON (the committed results).
DEFAULT_LAB_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "lab"
#: Longest source sentence or softmax prefix (characters): a view is one piece of work on a decoding worker.
MAX_LEARN_CHARS = 500
DEFAULT_TEXT = "Ein Mann fährt mit dem Fahrrad über eine Brücke."


@dataclasses.dataclass(frozen=True)
class View:
    """One idea of the lectures: its button, what to look for, and how it is made."""

    key: str
    title: str
    idea: str  # the lecture idea it shows
    look_for: str  # two or three sentences shown above the picture
    command: str  # the CLI command that makes it


VIEWS = [
    View("params", "Parameters", "the same weights at every step; how many parameters a model takes",
         "Each bar is one component, with its formula: a recurrent layer costs g·(E·H + H·H + 2H) however long the "
         "sentence (g = 1 for a tanh RNN, 3 for a GRU, 4 for an LSTM). The top panel is the lectures' exercise "
         "(E = 100, H = 128: W_x 12,800, W_h 16,384); the embeddings and the output layer usually dominate.",
         "translator lab params --source CKPT --output params.png"),
    View("gradients", "Vanishing gradients", "backpropagation through time; vanishing and exploding gradients, clipping",
         "Left: how much gradient reaches the encoder state k tokens before the end, relative to the last one "
         "(log scale): the steeper the fall, the less the model can learn from far-away words. Middle: the global "
         "gradient norm per step, before and after clipping at 1.0; the purple line never goes above the dashed cap.",
         "translator lab gradients --output gradients.png"),
    View("gates", "LSTM / GRU gates", "the LSTM's forget, input and output gates; the GRU's reset and update gates",
         "Rows are hidden units, columns the source pieces in the order the encoder reads them. A forget gate near 1 "
         "(bright) keeps the cell state, and its gradient, across steps; the bottom panel is each gate's mean.",
         "translator lab gates CKPT --text ... --output gates.png"),
    View("exposure", "Teacher forcing vs free running", "teacher forcing in training, the model's own words at test time",
         "Dashed lines: the BLEU of the model's next-word guesses when it is always given the reference prefix "
         "(teacher forcing's promise); solid lines: its BLEU when it must read its own output (free running). The gap "
         "is exposure bias; scheduled sampling feeds the model some of its own predictions in training.",
         "translator lab exposure --output exposure.png"),
    View("positions", "Positional encoding", "positional encoding",
         "Attention alone cannot tell word order, so each position adds a vector of sines and cosines of different "
         "frequencies (left). Their dot products (middle) depend only on the distance between two positions and "
         "fall as it grows (right).", "translator lab positions --output positions.png"),
    View("attention", "Attention", "attention as a query searching keys for values",
         "Each small map is one layer and one head: rows are queries (the word being produced or read), columns "
         "keys; bright = weight. Encoder self-attention mixes the source, decoder self-attention only looks back "
         "(the triangle), and cross-attention finds the source words each output word is translating.",
         "translator lab attention CKPT --text ... --output attention.png"),
    View("bottleneck", "The context-vector bottleneck", "the encoder squeezes a sentence into one vector",
         "BLEU by source length on joined Multi30k test pairs: one fixed-size context vector cannot hold a long "
         "input, while attention reads every source state, so the context-vector model should fall fastest. The "
         "'len' labels are output/reference length: a model that stops after the first sentence loses BLEU for "
         "that alone.",
         "translator lab bottleneck --checkpoint A=... --checkpoint B=... --output bottleneck.png"),
    View("softmax", "Softmax and sampling", "softmax over the vocabulary, temperature, top-k and top-p",
         "The top bars are the next-word distribution after the prefix, at temperature 1 and at the chosen one "
         "(higher flattens it). The bottom bars are what sampling really draws from after top-k and top-p cut the "
         "tail (renormalised): the fewer tokens kept, the safer and duller the output.",
         "translator lab softmax CKPT --text ... --prefix ... --output softmax.png"),
    View("beam", "Beam search", "<sos>/<eos>, greedy and beam search",
         "Every step keeps the K best partial translations by summed log-probability (the table, best first); a "
         "hypothesis that emits `</s>` is finished. The best first word is not always part of the best sentence.",
         "translator lab beam CKPT --text ... --output beam.png"),
]
VIEW_BY_KEY = {v.key: v for v in VIEWS}


@dataclasses.dataclass
class LearnResult:
    """What a view shows: a figure, an optional table (header, rows) and a markdown note."""

    figure: Any
    table: tuple[list[str], list[list[Any]]] | None
    note: str


class LearnService:
    """The Learn tab's requests over the app's `ModelRegistry`, on its service's workers and time limit."""

    def __init__(self, registry: ModelRegistry, lab_dir: str | Path | None = None,
                 service: TranslatorService | None = None):
        self.registry = registry
        self.service = service or TranslatorService(registry)  # the app passes its own: one set of workers
        self.lab_dir = Path(lab_dir) if lab_dir else DEFAULT_LAB_DIR

    @staticmethod
    def check(key: Any, checkpoint: Any = None, text: Any = "", prefix: Any = "", temperature: Any = 1.0,
              top_k: Any = 10, top_p: Any = 0.9, beam_size: Any = 4) -> dict[str, Any]:
        """The view's arguments, or UserError for an unknown view or a field over its limit (cheap: no model
        is loaded, so the app runs it before a request is queued)."""
        if check_field(key, "view") not in VIEW_BY_KEY:
            raise UserError(f"Unknown view {str(key)[:60]!r}; choose one of {', '.join(VIEW_BY_KEY)}")
        text = check_field(text, "sentence", MAX_LEARN_CHARS).strip() or DEFAULT_TEXT
        return {"checkpoint": check_field(checkpoint, "checkpoint") or None, "text": text,
                "prefix": check_field(prefix, "prefix", MAX_LEARN_CHARS),
                "temperature": served("temperature", temperature), "top_k": served("top_k", top_k),
                "top_p": served("top_p", top_p), "beam_size": served("beam_size", beam_size)}

    def show(self, key: str, checkpoint: str | None = None, text: str = "", prefix: str = "",
             temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9, beam_size: int = 4) -> LearnResult:
        """Make view `key` (see VIEWS) for the chosen checkpoint and sentence, on a decoding worker."""
        args = self.check(key, checkpoint, text, prefix, temperature, top_k, top_p, beam_size)
        make: Callable[..., LearnResult] = getattr(self, f"_{key}")

        def view() -> LearnResult:
            try:
                return make(**args)
            except ValueError as err:  # the lab's own checks (empty sentence, no gates in a Transformer, ...)
                if isinstance(err, UserError):
                    raise
                raise UserError(str(err)) from None

        return self.service.run([view], "view", "Use a shorter sentence or prefix, or a smaller beam.")[0]

    # ---- choosing a model ----------------------------------------------------------------------
    def _model(self, checkpoint: str | None, fits: Callable[[Any], bool] | None = None, need: str = "") -> tuple[Any, str]:
        """The chosen checkpoint's Translator, or the first loaded one that `fits` -> (translator, note)."""
        # An exported engine (CTranslate2) decodes ids itself: the lab needs the PyTorch modules.
        usable = lambda m: isinstance(m, Seq2Seq) and (fits is None or fits(m))  # noqa: E731
        need = need or "needs a PyTorch checkpoint (not an exported engine)"
        chosen = self.registry.resolve(checkpoint, ensembles=False)  # the views look inside one model
        translator = self.registry.translator(chosen)
        if usable(translator.model):
            return translator, f"Model: **{chosen.label}**."
        for info in self.registry.translation:
            if info.error or info is chosen:
                continue
            other = self.registry.translator(info)
            if usable(other.model):
                return other, f"Model: **{info.label}** ({chosen.label} has {need.replace('needs', 'no')})."
        raise UserError(f"This view {need}; {chosen.label} is a {chosen.architecture} and no loaded "
                        "checkpoint has one. Start the app with such a checkpoint too (--checkpoint A --checkpoint B).")

    def _json(self, name: str) -> dict[str, Any]:
        path = self.lab_dir / f"{name}.json"
        if not path.is_file():
            raise UserError(f"No precomputed results at {path}: run `translator lab {name} ... --output "
                            f"{path.with_suffix('.png')}` first (see `translator lab {name} --help`).")
        return json.loads(path.read_text(encoding="utf-8"))

    # ---- the views -----------------------------------------------------------------------------
    def _params(self, checkpoint: str | None, **_: Any) -> LearnResult:
        translator, note = self._model(checkpoint)
        rows = params.components(translator.model)
        data = {"exercise": {"emb_size": 100, "hidden_size": 128, "vocab_size": 10000, "rows": params.exercise()},
                "model": {"source": "loaded checkpoint", "class": type(translator.model).__name__, "rows": rows,
                          "total": sum(r["actual"] for r in rows)}}
        table = (["component", "formula", "parameters"],
                 [[r["component"], r["formula"], f"{r['actual']:,}"] for r in params.grouped(rows)])
        return LearnResult(params.figure(data), table, f"{note} {data['model']['total']:,} parameters in all.")

    def _positions(self, checkpoint: str | None, **_: Any) -> LearnResult:
        d_model = 256
        try:
            translator, _ = self._model(checkpoint)
            d_model = int(getattr(translator.model, "d_model", 256))
        except UserError:
            pass  # no checkpoint: the table of the shipped width
        data = positions.compute(64, d_model)
        return LearnResult(positions.figure(data), None, f"D = {d_model}; PE[p]·PE[q] depends only on p − q: "
                                                         f"{data['shift_invariant']}.")

    def _gates(self, checkpoint: str | None, text: str, **_: Any) -> LearnResult:
        translator, note = self._model(checkpoint, lambda m: type(getattr(m, "encoder", None)).__name__ in
                                       gates.GATE_NAMES, "needs an LSTM or GRU encoder")
        data = gates.compute(translator.model, translator.tokenizer, text)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in data["share_above_0.9"].items())
        return LearnResult(gates.figure(data), None, f"{note} Share of gate values above 0.9: {shares}. "
                           f"(Recomputed from the weights; max difference to PyTorch's own states "
                           f"{data['max_abs_diff_vs_pytorch']:.1e}.)")

    def _attention(self, checkpoint: str | None, text: str, **_: Any) -> LearnResult:
        translator, note = self._model(checkpoint, lambda m: m.has_attention, "needs attention")
        data = attention.compute(translator.model, translator.tokenizer, text)
        return LearnResult(attention.figure(data), None, f"{note} Output: “{data['target']}”.")

    def _softmax(self, checkpoint: str | None, text: str, prefix: str, temperature: float, top_k: int, top_p: float,
                 **_: Any) -> LearnResult:
        translator, note = self._model(checkpoint)
        data = softmax.compute(translator.model, translator.tokenizer, text, prefix, temperature, top_k, top_p)
        table = (["piece", "p (T=1)", f"p (T={temperature:g})", "after top-k", "after top-p"],
                 [[r["piece"], f"{r['p']:.3f}", f"{r['p_tempered']:.3f}", f"{r['p_top_k']:.3f}", f"{r['p_top_p']:.3f}"]
                  for r in data["rows"]])
        return LearnResult(softmax.figure(data), table, f"{note} top-k keeps {data['kept']['top_k']}, top-p keeps "
                           f"{data['kept']['top_p']} of {data['vocab_size']:,} tokens.")

    def _beam(self, checkpoint: str | None, text: str, beam_size: int, **_: Any) -> LearnResult:
        translator, note = self._model(checkpoint)
        data = beam.compute(translator.model, translator.tokenizer, text, beam_size)
        table = (["step", "rank", "hypothesis", "score", "parent"],
                 [[r["step"], "✓ ended" if r["ended"] else r["rank"], r["hypothesis"], r["score"],
                   r["parent"] or ""] for r in data["rows"]])
        best = data["final"][0]
        return LearnResult(beam.figure(data), table, f"{note} Best (length-normalised {best['normalized']}): "
                           f"“{best['hypothesis']}”.")

    def _gradients(self, **_: Any) -> LearnResult:
        data = self._json("gradients")
        ratios = ", ".join(f"{c} {d['ratio_far_to_near']:.1e}" for c, d in data["cells"].items())
        return LearnResult(gradients.figure(data), None, f"Precomputed by `translator lab gradients` "
                           f"({data['steps']} steps each on {data['dataset']}). Gradient at the far end / near end: "
                           f"{ratios}.")

    def _exposure(self, **_: Any) -> LearnResult:
        data = self._json("exposure")
        gaps = ", ".join(f"{name}: {d['gap_at_end']:.1f} BLEU" for name, d in data["runs"].items())
        return LearnResult(exposure.figure(data), None, f"Precomputed by `translator lab exposure`. Promise minus "
                           f"free running at the end: {gaps}.")

    def _bottleneck(self, **_: Any) -> LearnResult:
        data = self._json("bottleneck")
        return LearnResult(bottleneck.figure(data), None, f"Precomputed by `translator lab bottleneck` on "
                           f"{data['split']} ({data['sentences']} sources, {data['over_20_words']} over 20 words).")
