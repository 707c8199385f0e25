"""`translator translate`: one output line per input line, streamed (`translate_file`, `format_output`)."""
from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from translator.decoding import DecodeConfig, decode_config
from translator.inference.streaming import LineSink, LineSource, isatty, progress_bar
from translator.inference.translator import Translation, Translator


NBEST_SEPARATOR = "\t"
# Characters that some reader (str.splitlines, editors, less) treats as a line break; an output
# containing one would shift every later line, so they become spaces.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def format_output(result: Translation, nbest: int = 1, scores: bool = False,
                  min_confidence: float | None = None) -> str:
    """One output line for one input line (no newline); with nbest > 1, `text<TAB>score` pairs best first.

    With `scores`, the sentence's confidence follows as one more tab-separated field; with `min_confidence`,
    a line whose confidence is below it ends in one more field, `REVIEW` (marked, never dropped).
    An empty input gives an empty line in every format, so output and input line counts always match.
    """
    if nbest <= 1 and not scores and min_confidence is None:
        return _LINE_BREAKS.sub(" ", result.text)
    if not result.src_pieces:  # empty or whitespace-only input
        return ""
    fields = []
    for text, score in result.nbest[:nbest]:
        fields.append(_LINE_BREAKS.sub(" ", text).replace("\t", " "))
        if nbest > 1:
            fields.append(f"{score:.4f}")
    if scores or min_confidence is not None:
        fields.append(f"{result.confidence:.4f}")
    if min_confidence is not None and result.confidence < min_confidence:
        fields.append(REVIEW_MARK)
    return NBEST_SEPARATOR.join(fields)


#: The last field of an output line whose confidence is below --min_confidence.
REVIEW_MARK = "REVIEW"


#: Input lines translated together (one chunk, sorted by length inside) = batch_size * CHUNK_BATCHES.
CHUNK_BATCHES = 8


def translate_file(checkpoint: str | Path | None, input: str | Path | None = None, output: str | Path | None = None,
                   config: DecodeConfig | None = None, device: str = "cpu", batch_size: int = 64,
                   precision: str = "fp32", ensemble: Sequence[str | Path] | None = None,
                   backward: str | Path | None = None, scores: bool = False, min_confidence: float | None = None,
                   **options: Any) -> int:
    """Translate one sentence per line of `input` (file, or stdin) into `output` (file, or stdout), streaming.

    Output has exactly one line per input line, in input order; empty or whitespace-only input
    lines give empty output lines. With `nbest` > 1 each line holds the hypotheses best first as
    tab-separated `text<TAB>score` pairs (`cut -f1` gives the 1-best output); score is the
    ranking score (length-normalised log-probability, or the anti-LM score). Lines are read,
    translated and written a chunk at a time (`translator.inference.streaming`): memory does not grow with
    the input, a line piped alone is answered at once, and a terminal gets a prompt per line.
    An `output` file appears whole once the last line is written (never half-written, never onto
    the input or a checkpoint: `translator.atomic`). `config` defaults to the checkpoint's (`Translator.default_decoding`) and `options` are
    DecodeConfig fields over it. Input, output and options are checked before the model loads.
    With `ensemble` (checkpoints; `checkpoint` None) their ensemble translates
    (`Translator.from_ensemble`). With `backward` (a chat model's backward .ckpt) the replies are
    re-ranked by MMI-bidi (`Translator`). With `scores` each line adds the sentence's confidence (a calibrated
    checkpoint), and with `min_confidence` lines below it are marked `REVIEW` (`format_output`).
    Returns the number of lines.
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if (checkpoint is None) == (not ensemble):
        raise ValueError("give one checkpoint (--checkpoint CKPT) or an ensemble (--ensemble CKPT CKPT ...), "
                         + ("not both" if ensemble else "got neither"))
    if decode_config(config, **options).backward_weight and backward is None:  # bad options fail before loading
        raise ValueError("backward_weight (MMI-bidi re-ranking) needs a backward model: give --backward CKPT")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    reads = {"input": input, "checkpoint": checkpoint, "ensemble checkpoint": ensemble}
    sink = LineSink(output, reads, stdin_read=input is None or str(input) == "-")  # found now, not after decoding
    source = LineSource(input)
    try:
        if ensemble:
            translator = Translator.from_ensemble(ensemble, device=device, precision=precision, backward=backward)
        else:
            translator = Translator.from_checkpoint(checkpoint, device=device, precision=precision, backward=backward)
        config = decode_config(config, translator.default_decoding, **options)
        confidence = scores or min_confidence is not None
        if confidence:
            translator._require_calibrator()  # before any line is read
        show_bar = isatty(sys.stderr) and not source.interactive
        bar = progress_bar(source.total() if show_bar else None, enabled=show_bar)
        count = 0
        try:
            with sink.open():
                prompt = f"{translator.bundle.src_lang or 'source'}> "
                for chunk in source.chunks(batch_size * CHUNK_BATCHES, prompt=prompt):
                    results = translator.translate(chunk, config, batch_size=batch_size, confidence=confidence)
                    sink.write("".join(format_output(r, config.nbest, scores, min_confidence) + "\n"
                                       for r in results))
                    count += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    finally:
        source.close()
    return count
