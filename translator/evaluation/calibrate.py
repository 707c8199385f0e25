"""`translator calibrate CKPT`: fit a checkpoint's confidence calibrator on its validation split and write a
calibrated copy (translator/inference/confidence.py says what the confidence is)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from translator.artifacts.checkpoint import is_exported, read_checkpoint, save_calibrated
from translator.data.registry import load_pairs, normalize_split
from translator.decoding import DecodeOptions, decode_config
from translator.evaluation.metrics import reliability, sentence_chrf, spearman
from translator.evaluation.plots import plot_reliability
from translator.inference.confidence import CHRF_THRESHOLD, SIGNALS, Calibrator
from translator.inference.translator import Translator
from translator.tasks import DEFAULT_CONTEXT_TURNS


def calibrate(
    checkpoint: str,
    output: str | None = None,
    overwrite: bool = False,
    split: str = "val",
    data_dir: str | None = None,
    chrf_threshold: float | str = CHRF_THRESHOLD,
    signals: list[str] | None = None,
    max_sentences: int | None = None,
    decode: DecodeOptions = DecodeOptions(),
    batch_size: int = 64,
    plot: str | None = None,
    device: str = "cpu",
) -> Path:
    """Fit a confidence calibrator on the checkpoint's validation split; write a calibrated checkpoint.

    Translates the split with the checkpoint's default decoding (or --decode.*), computes each sentence's
    confidence signals and its chrF against the reference, and fits a logistic regression that predicts
    whether a sentence reaches chrF >= --chrf_threshold. The result is the input checkpoint plus its
    calibrator, written atomically to --output (default: CKPT with `.calibrated.ckpt`); the input is never
    overwritten unless --output names it and --overwrite is given. Prints the Spearman correlation of
    the confidence with sentence chrF on that split (in-sample) beside the mean log-probability's.

    Examples:
        translator calibrate checkpoints/transformer-multi30k-de-en/version_0/checkpoints/best.ckpt
        translator calibrate CKPT --output calibrated.ckpt --chrf_threshold 40 --plot reliability-val.png
        translator calibrate CKPT --chrf_threshold median

    Args:
        checkpoint: a .ckpt written by `translator fit` (an exported directory has no trainable model to score).
        output: where to write the calibrated checkpoint (default: beside CKPT, `NAME.calibrated.ckpt`).
        overwrite: allow --output to replace an existing file (the input included).
        split: the split to fit on: val (choose on validation, never on test).
        data_dir: folder holding the datasets (default: $TRANSLATOR_DATA_DIR, then data/).
        chrf_threshold: a sentence with chrF at or above this is a good translation; the confidence is the
            estimated probability of that. "median": the median sentence chrF of the split (for a model whose
            sentences seldom reach 50).
        signals: the signals the calibrator combines (default: all of translator.inference.confidence.SIGNALS).
        max_sentences: fit on the first N sentences of the split only.
        decode: decoding options over the checkpoint's defaults; the calibrator is fitted for this decoding.
        batch_size: sentences decoded together.
        plot: write the reliability diagram of the fitted split here (PNG).
        device: cpu, cuda, cuda:1, ...
    """
    source = Path(checkpoint)
    if is_exported(source):
        raise ValueError(f"{source} is an exported (CTranslate2) model; calibrate the .ckpt it was exported from, "
                         "then export that")
    target = Path(output) if output else source.with_name(source.name.removesuffix(".ckpt") + ".calibrated.ckpt")
    if target.exists() and not overwrite:
        same = target.resolve() == source.resolve()
        raise ValueError(f"{target} exists{' (it is the input checkpoint)' if same else ''}; give another --output, "
                         "or --overwrite to replace it")
    if isinstance(chrf_threshold, str) and chrf_threshold != "median":
        try:
            chrf_threshold = float(chrf_threshold)
        except ValueError:
            raise ValueError(f"chrf_threshold must be a number or 'median', got {chrf_threshold!r}") from None
    features = list(signals) if signals else list(SIGNALS)
    if max_sentences is not None and max_sentences < 2:
        raise ValueError(f"max_sentences must be at least 2, got {max_sentences}")
    decode_config(decode)  # a bad option fails before the model loads
    raw = read_checkpoint(source)
    translator = Translator.from_checkpoint(source, device=device)
    bundle = translator.bundle
    if not bundle.dataset:
        raise ValueError(f"{source} does not record the dataset it was trained on, so it has no validation split")
    context_turns = int(bundle.data.get("context_turns") or DEFAULT_CONTEXT_TURNS)
    pairs = load_pairs(bundle.dataset, split, bundle.src_lang, bundle.tgt_lang, data_dir=data_dir,
                       context_turns=context_turns)[:max_sentences]
    if len(pairs) < 2:
        raise ValueError(f"{bundle.dataset} {split} has {len(pairs)} sentence pair(s); calibrating needs several")
    config = decode_config(decode, translator.default_decoding)
    results = translator.translate([s for s, _ in pairs], config, batch_size=batch_size, signals=True)
    chrf = sentence_chrf([r.text for r in results], [t for _, t in pairs])
    if chrf_threshold == "median":
        chrf_threshold = sorted(chrf)[len(chrf) // 2]
    found = [r.signals for r in results]
    baseline = spearman([s["mean_logprob"] for s in found], chrf)
    info: dict[str, Any] = {"dataset": bundle.dataset, "split": normalize_split(split), "sentences": len(pairs),
                            "decoding": config.summary(), "baseline_spearman": baseline}
    calibrator = Calibrator.fit(found, chrf, chrf_threshold, features, info=info)
    confidence = [calibrator(s) for s in found]
    calibrator.info["spearman"] = spearman(confidence, chrf)
    save_calibrated(raw, calibrator.to_dict(), target)

    rows = reliability(confidence, chrf, chrf_threshold)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"calibrated on {bundle.dataset} {normalize_split(split)} ({len(pairs)} sentences, target chrF >= "
          f"{chrf_threshold:g}, {sum(c >= chrf_threshold for c in chrf)} reach it): Spearman with sentence chrF "
          f"{fmt(calibrator.info['spearman'])} (mean log-probability alone: {fmt(baseline)}; in-sample)")
    for row in rows:
        print(f"  confidence {row['bin']}: {row['n']:5d} sentences, {row['reach_share']:.0%} reach chrF "
              f"{chrf_threshold:g}")
    if plot:
        print(f"wrote {plot_reliability(rows, chrf_threshold, plot, title=f'{source.name} on {split}')}",
              file=sys.stderr)
    print(f"wrote {target}", file=sys.stderr)
    return target
