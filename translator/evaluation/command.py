"""`translator evaluate`: translate a test set with one or more checkpoints, then score, time and plot.

The scoring itself is in metrics.py (pure functions over strings); this module adds what
needs a model: reading the test set, checking each checkpoint fits it, decoding and timing.

Translation test sets given as files are streamed: read, decoded and scored in blocks of
`BLOCK_LINES` lines (sacreBLEU statistics summed block by block, translations written as they
come with --hypotheses, whose file appears whole when done), so memory does not grow with the file.
Chat reports need every reply at once (distinct-n over the whole set) and read the set whole.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from sacrebleu.metrics import BLEU

from translator.artifacts.checkpoint import CheckpointMeta
from translator.atomic import atomic_open, check_input_file, check_outputs
from translator.data.readers import count_lines, iter_lines
from translator.data.registry import get_spec, load_pairs, normalize_split, resolve_languages
from translator.decoding import DecodeConfig, DecodeOptions, decode_config
from translator.engines.base import check_precision
from translator.evaluation import metrics, plots
from translator.evaluation.metrics import StreamingScore
from translator.evaluation.relevance import DEFAULT_K, DEFAULT_MAX_PAIRS, relevance
from translator.evaluation.report import build_report, format_table, stream_report, write_json
from translator.inference.translator import Translator, check_device
from translator.tasks import DEFAULT_CONTEXT_TURNS, get_task

BLOCK_LINES = 20_000  # lines decoded and scored together: length-sorted batching within a block wastes little

@dataclasses.dataclass
class TestSet:
    """Parallel source and reference lines (None: streamed from the files) plus where they came from."""

    sources: list[str] | None
    references: list[str] | None
    dataset: str | None = None
    split: str | None = None
    source_path: str | None = None
    reference_path: str | None = None
    count: int = 0  # lines of a streamed set

    def blocks(self, size: int, limit: int | None = None) -> Iterator[tuple[list[str], list[str]]]:
        """(sources, references) in blocks of at most `size` lines, the first `limit` lines only."""
        if self.sources is not None:
            pairs: Iterator[tuple[str, str]] = iter(zip(self.sources, self.references))
        else:
            pairs = zip(iter_lines(self.source_path), iter_lines(self.reference_path))
        pairs = itertools.islice(pairs, limit)
        while block := list(itertools.islice(pairs, size)):
            yield [s for s, _ in block], [r for _, r in block]

    def whole(self, limit: int | None = None) -> "TestSet":
        """The same set with its lines in memory (the first `limit`)."""
        sources, references = [], []
        for s, r in self.blocks(BLOCK_LINES, limit):
            sources += s
            references += r
        return dataclasses.replace(self, sources=sources, references=references)


def evaluate(
    checkpoint: list[str] | str | None = None,
    dataset: str | None = None,
    split: str = "test",
    source: str | None = None,
    reference: str | None = None,
    data_dir: str | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    decode: DecodeOptions = DecodeOptions(),
    batch_size: int = 64,
    max_sentences: int | None = None,
    json: str | None = None,
    plot: str | None = None,
    label: list[str] | str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    tokenize: str | None = None,
    lowercase: bool = False,
    ensemble: list[str] | str | None = None,
    hypotheses: str | None = None,
    backward: str | None = None,
    hits_k: int = DEFAULT_K,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    confidence: bool = False,
    reliability: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Translate a test set with each checkpoint; print sacreBLEU/chrF, speed and BLEU by source length.

    The test set is a registry dataset split (--dataset) or two line-aligned files (--source and
    --reference). Languages default to the checkpoint's; a checkpoint trained on another language
    pair, or for another task (a translation model on chat data, or the reverse), is an error.
    BLEU uses the tokenizer for the target language (char for Korean, see
    `metrics.choose_bleu_tokenizer`); chat checkpoints also get distinct-1/2, generic share,
    reply lengths and 4-gram entropy (beside the same of the references: the human ceiling) and
    the perplexity of the references, BLEU-1/2 as dialogue papers compute them (mean smoothed sentence
    BLEU), seconds per reply, and relevance: hits@1 of --hits_k by per-token likelihood, by the anti-LM
    score and, with --backward, by the MMI-bidi score (`translator.evaluation.relevance`). With --ensemble, the
    ensemble of those checkpoints (the mean of their log-probabilities) is one more row, after the
    --checkpoint rows. Returns one report per row (layout in `translator.evaluation`). Python
    callers may pass DecodeConfig fields as keywords.

    Args:
        checkpoint: one or more .ckpt files or exported (CTranslate2) directories (repeat --checkpoint to compare
            several in one table and plot).
        dataset: registry dataset to evaluate on (multi30k, tatoeba-eng-fra, chatbot-ko, dailydialog).
        split: dataset split: test, val or train.
        source: source file, one sentence per line (instead of --dataset; needs --reference).
        reference: reference file, line-aligned with --source.
        data_dir: folder holding the datasets (default: $TRANSLATOR_DATA_DIR, then data/).
        src_lang: source language (default: the checkpoint's).
        tgt_lang: target language (default: the checkpoint's); also picks the BLEU tokenizer.
        decode: decoding options over the checkpoint's defaults (translation: beam 5, length penalty 1.0;
            chat: CHAT_DECODING), e.g. --decode.method greedy; a DecodeConfig from Python replaces them.
        batch_size: sentences decoded together (sorted by length internally).
        max_sentences: evaluate only the first N sentences of the test set.
        json: write the report(s) here as JSON (one checkpoint: an object; several: a list).
        plot: write a PNG of BLEU by source length here, one line per checkpoint.
        label: names for the checkpoints in table, JSON and plot (default: checkpoint file names); one more
            names the ensemble (default: ensemble(A+B+...)).
        device: cpu, cuda, cuda:1, ...
        precision: fp32, bf16 (autocast: faster on CPUs with AVX-512 bf16 and on GPUs; scores may differ slightly)
            or int8 (dynamic int8 quantization, CPU); an exported directory keeps its exported type under fp32.
        tokenize: sacreBLEU tokenizer to use instead of the target language's default (13a, intl, char, ...).
        lowercase: case-insensitive BLEU and chrF.
        ensemble: checkpoints (one tokenizer, any families) to evaluate as one ensemble, e.g. the last
            epochs of a run or runs with different seeds; --checkpoint may name them too (one row each).
        hypotheses: write the translations here, one line per source line (one checkpoint; the file appears whole
            when every line is decoded).
        backward: chat: a backward model of p(message | reply) (trained with --data.reverse true on the chat
            model's tokenizer) for every row: decoding re-ranks by MMI-bidi and hits1_mmi is reported.
        hits_k: chat: rank the true reply among this many candidates (k - 1 replies of other pairs of the split,
            seeded) for hits@1; 0 = skip relevance.
        max_pairs: chat: rank this many pairs of the split for hits@1 (a seeded sample; 0 = every pair).
        confidence: add each sentence's confidence (calibrated checkpoints, `translator calibrate`) to the report:
            `confidence` (one value per sentence, in order), `sentence_chrf`, and `confidence_summary` (mean,
            Spearman with sentence chrF beside the mean log-probability's, the reliability table); the timing
            then includes computing it.
        reliability: write the reliability diagram of the confidence here (PNG; implies --confidence; one row).
    """
    paths = [] if checkpoint is None else [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    members = [] if ensemble is None else [ensemble] if isinstance(ensemble, (str, Path)) else list(ensemble)
    if not paths and not members:
        raise ValueError("no checkpoint given; pass --checkpoint CKPT (or --ensemble CKPT CKPT ...)")
    labels = _labels(paths, label, members)
    decode_config(decode, **options)  # bad options fail before anything loads
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_sentences is not None and max_sentences < 1:
        raise ValueError(f"max_sentences must be >= 1, got {max_sentences}")
    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise ValueError(f"unknown BLEU tokenizer {tokenize!r}; choose one of {sorted(BLEU.TOKENIZERS)}")
    if hits_k < 0 or hits_k == 1:
        raise ValueError(f"hits_k must be 0 (no relevance) or >= 2, got {hits_k}")
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0 (0 = every pair), got {max_pairs}")
    confidence = confidence or bool(reliability)
    if reliability and len(paths) + bool(members) > 1:
        raise ValueError("--reliability takes one checkpoint; evaluate the others separately")
    if hypotheses and len(paths) + bool(members) > 1:
        raise ValueError("--hypotheses takes one checkpoint; evaluate the others separately")
    files = _read_files(dataset, source, reference)  # bad files fail before any checkpoint loads
    check_outputs({"--json": json, "--plot": plot, "--hypotheses": hypotheses, "--reliability": reliability},
                  {"--source": source, "--reference": reference, "checkpoint": paths, "ensemble checkpoint": members})
    check_device(device)
    check_precision(precision)
    every = list(dict.fromkeys([*paths, *members]))
    metas = [CheckpointMeta.from_path(p) for p in every]
    _check_tasks(every, metas, dataset)
    pair = _language_pair(every, [m.data for m in metas], src_lang, tgt_lang, dataset)
    meta_of = dict(zip(every, metas))
    rows = [(p, meta_of[p]) for p in paths] + ([(members, meta_of[members[0]])] if members else [])

    with contextlib.ExitStack() as outputs:  # --hypotheses appears whole, once every line is decoded
        hyp_file = outputs.enter_context(atomic_open(hypotheses, "w", encoding="utf-8")) if hypotheses else None
        reports, cache = [], {}
        for (path, meta), name in zip(rows, labels):  # path: a checkpoint, or the ensemble's list
            context_turns = int(meta.data.get("context_turns") or DEFAULT_CONTEXT_TURNS)
            test = files or cache.get(context_turns)
            if test is None:
                test = cache[context_turns] = _load_dataset(dataset, split, pair, data_dir, context_turns)
            if isinstance(path, list):
                translator = Translator.from_ensemble(path, device=device, precision=precision,
                                                         backward=backward)
            else:
                translator = Translator.from_checkpoint(path, device=device, precision=precision,
                                                           backward=backward)
            config = decode_config(decode, translator.default_decoding, **options)
            chat = meta.task.whole_corpus_metrics
            about = dict(label=name, checkpoint=" + ".join(map(str, path)) if isinstance(path, list) else str(path),
                         dataset=test.dataset, split=test.split,
                         source_path=test.source_path, reference_path=test.reference_path, decoding=config.summary())
            if chat:  # distinct-n and the other chat metrics need every reply at once
                test = test.whole(max_sentences)
                rank_k, distinct = hits_k, len(set(test.references))
                if rank_k and distinct < rank_k:  # a small set still gets every other metric
                    print(f"translator evaluate: note: no hits@1 of {rank_k}: the test set has {distinct} different "
                          f"replies (fewer than {rank_k}); lower --hits_k to rank among fewer", file=sys.stderr)
                    rank_k = 0
                seconds, results = _timed_translate(translator, test.sources, batch_size, name, config, confidence)
                _write_hypotheses(hyp_file, [r.text for r in results])
                report = build_report(
                    [r.text for r in results], test.references, source_lengths=test.sources, target_lang=pair[1],
                    tokenize=tokenize, lowercase=lowercase, seconds=seconds,
                    generated_tokens=sum(len(r.tokens) for r in results), chat=True, **about)
                report["reference_perplexity"] = translator.perplexity(test.sources, test.references, batch_size)
                if rank_k:  # the decoding's own weights, 1 where it has none
                    report.update(relevance(translator, test.sources, test.references, rank_k, max_pairs,
                                            lm_weight=config.lm_weight or 1.0,
                                            backward_weight=config.backward_weight or 1.0, batch_size=batch_size))
                if confidence:
                    scored = _ConfidenceScores(translator, lowercase)
                    scored.add(results, test.references)
                    report.update(scored.report())
            else:
                scored = _ConfidenceScores(translator, lowercase) if confidence else None
                report = _streamed_report(translator, test, config, batch_size, max_sentences, pair[1], tokenize,
                                          lowercase, hyp_file, about, scored)
            if reliability:
                summary = report["confidence_summary"]
                written = plots.plot_reliability(summary["reliability"], summary["chrf_threshold"], reliability,
                                                      title=f"{name} on {test.split or test.source_path}")
                print(f"wrote {written}", file=sys.stderr)
            report.update(src_lang=pair[0], tgt_lang=pair[1], architecture=translator.bundle.architecture,
                          batch_size=batch_size, device=str(device), precision=precision, chat=chat)
            if isinstance(path, list):
                report["ensemble"] = [str(p) for p in path]
            elif translator.bundle.parent:  # a fine-tuned model: where it came from (translator/training/finetune.py)
                report.update(parent=translator.bundle.parent, lineage=translator.bundle.lineage)
            reports.append(report)
            del translator  # one model in memory at a time
    print(format_table(reports))
    if json:
        print(f"wrote {write_json(reports[0] if len(reports) == 1 else reports, json)}", file=sys.stderr)
    if plot:
        curves = {r["label"]: r["bleu_by_length"] for r in reports}
        print(f"wrote {plots.plot_bleu_by_length(curves, plot)}", file=sys.stderr)
    return reports


def _check_tasks(paths: Sequence[str | Path], metas: Sequence[CheckpointMeta], dataset: str | None) -> None:
    """Every checkpoint must be of the dataset's task (chat or translation), and all of one task."""
    wanted = get_task(get_spec(dataset).task) if dataset else metas[0].task
    asked = (f"dataset {dataset!r} is a {wanted.name} dataset" if dataset
             else f"{paths[0]} is a {wanted.name} model")
    for path, meta in zip(paths, metas):
        if meta.task != wanted:
            task = meta.task.name
            trained = f" (trained on {meta.dataset})" if meta.dataset else ""
            raise ValueError(f"{path} is a {task} checkpoint{trained}, but {asked}; evaluate {task} checkpoints "
                             f"on {task} data")


def _labels(paths: Sequence[str | Path], label: Sequence[str] | str | None,
            ensemble: Sequence[str | Path] = ()) -> list[str]:
    """One distinct label per row: the given ones, else file stems (with the folder when stems clash),
    and `ensemble(A+B)` for the ensemble row when `ensemble` names checkpoints."""
    rows = len(paths) + bool(ensemble)
    if label is not None:
        labels = [label] if isinstance(label, str) else [str(x) for x in label]
        if len(labels) == len(paths) and ensemble:
            labels.append(_stem_labels(ensemble, "ensemble(", ")")[0])
        if len(labels) != rows:
            raise ValueError(f"{len(labels)} label(s) for {len(paths)} checkpoint(s)"
                             f"{' and an ensemble' if ensemble else ''}; give one --label per --checkpoint"
                             f"{' (and optionally one more for the ensemble)' if ensemble else ''}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must differ, got {labels}")
        return labels
    labels = _stem_labels(paths)
    if ensemble:
        labels += _stem_labels(ensemble, "ensemble(", ")")
    return labels


def _stem_labels(paths: Sequence[str | Path], prefix: str = "", suffix: str = "") -> list[str]:
    """Distinct file stems, with the folder when stems clash; with a prefix, all of them joined into one label."""
    labels = [Path(p).stem for p in paths]
    if len(set(labels)) < len(labels):  # e.g. runs/a/last.ckpt and runs/b/last.ckpt
        labels = [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}:{x}" for i, x in enumerate(labels)]
    return [prefix + "+".join(labels) + suffix] if prefix else labels


def _read_files(dataset: str | None, source: str | None, reference: str | None) -> TestSet | None:
    """The --source/--reference test set, or None when --dataset is used; exactly one of the two is allowed."""
    if dataset and (source or reference):
        raise ValueError("give either --dataset or --source/--reference, not both")
    if dataset:
        return None
    if not source and not reference:
        raise ValueError("no test set: give --dataset NAME (e.g. multi30k) or --source FILE --reference FILE")
    if not source or not reference:
        missing = "--reference" if source else "--source"
        raise ValueError(f"{missing} is missing: --source and --reference go together")
    for role, path in (("--source", source), ("--reference", reference)):
        if Path(path).exists():  # read twice (counted, then scored): a FIFO or a device cannot be
            check_input_file(path, role)
    counts = [count_lines(source), count_lines(reference)]  # one pass each, nothing kept
    if counts[0] != counts[1]:
        raise ValueError(f"source and reference are not parallel: {source} has {counts[0]} lines "
                         f"but {reference} has {counts[1]} lines")
    if not counts[0]:
        raise ValueError(f"empty test set: {source} and {reference} have no lines")
    blank = sum(not line.strip() for line in iter_lines(reference))  # streamed: nothing kept
    if blank == counts[0]:
        print(f"translator evaluate: warning: every line of {reference} is blank ({blank} lines): BLEU and chrF "
              "against empty references are 0 whatever the translations; is it the right file?", file=sys.stderr)
    elif blank:
        print(f"translator evaluate: warning: {blank} of {counts[0]} lines of {reference} are blank", file=sys.stderr)
    return TestSet(None, None, source_path=str(source), reference_path=str(reference), count=counts[0])


def _language_pair(paths: Sequence[str | Path], metas: Sequence[dict[str, Any]], src_lang: str | None,
                   tgt_lang: str | None, dataset: str | None) -> tuple[str | None, str | None]:
    """The (src, tgt) to evaluate: asked for, else the first checkpoint's; every checkpoint must translate it."""
    known = [(Path(p), (m["src_lang"], m["tgt_lang"])) for p, m in zip(paths, metas)
             if m.get("src_lang") and m.get("tgt_lang")]
    first = known[0][1] if known else (None, None)
    pair = (src_lang or first[0], tgt_lang or first[1])
    if dataset:
        pair = resolve_languages(dataset, *pair)  # fills a missing side; rejects pairs the dataset lacks
    asked = "--src_lang/--tgt_lang" if src_lang or tgt_lang else f"the first checkpoint {known[0][0]}" if known else ""
    for path, trained in known:
        if pair[0] and pair[1] and trained != pair:
            raise ValueError(f"{path} translates {trained[0]}->{trained[1]}, but {pair[0]}->{pair[1]} is being "
                             f"evaluated (from {asked or 'the dataset default'}); evaluate each pair separately")
    return pair


def _load_dataset(dataset: str, split: str, pair: tuple[str | None, str | None], data_dir: str | None,
                  context_turns: int) -> TestSet:
    """One registry split as a TestSet (pairs with an empty side are dropped by the readers)."""
    try:
        pairs = load_pairs(dataset, split, pair[0], pair[1], data_dir=data_dir, context_turns=context_turns)
    except FileNotFoundError as err:  # the registry names the training option; this command spells it --data_dir
        raise FileNotFoundError(str(err).replace("--data.data_dir", "--data_dir")) from None
    if not pairs:
        raise ValueError(f"empty test set: dataset {dataset!r} split {split!r} has no sentence pairs")
    return TestSet([s for s, _ in pairs], [t for _, t in pairs], dataset=dataset, split=normalize_split(split))


def _write_hypotheses(file: IO[str] | None, lines: Sequence[str]) -> None:
    if file is not None:
        file.writelines(f"{line}\n" for line in lines)


def _streamed_report(translator: Translator, test: TestSet, config: DecodeConfig, batch_size: int,
                     max_sentences: int | None, target_lang: str | None, tokenize: str | None, lowercase: bool,
                     hypotheses: IO[str] | None, meta: dict[str, Any],
                     scored: "_ConfidenceScores | None" = None) -> dict[str, Any]:
    """Decode and score `test` block by block (memory independent of its length); the report of `build_report`."""
    scorer = StreamingScore(target_lang, tokenize, lowercase)
    total = test.count if test.sources is None else len(test.sources)
    total = min(total, max_sentences or total)
    bar = None
    if total >= 100:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="sent", desc=meta["label"], file=sys.stderr, leave=False)
    seconds, generated, warm = 0.0, 0, False
    try:
        for sources, references in test.blocks(BLOCK_LINES, max_sentences):
            if not warm:  # the first call pays one-off costs (allocator, CUDA context, kernel choice)
                translator.translate(sources[:1], config, batch_size=1)
                warm = True
            start = time.perf_counter()
            results = translator.translate(sources, config, batch_size=batch_size,
                                           progress=bar.update if bar is not None else None,
                                           confidence=scored is not None)
            seconds += time.perf_counter() - start
            texts = [r.text for r in results]
            if scored is not None:
                scored.add(results, references)
            scorer.add(texts, references, sources)
            generated += sum(len(r.tokens) for r in results)
            _write_hypotheses(hypotheses, texts)
    finally:
        if bar is not None:
            bar.close()
    report = stream_report(scorer, seconds=seconds, generated_tokens=generated, **meta)
    if scored is not None:
        report.update(scored.report())
    return report


def _timed_translate(translator: Translator, sources: list[str], batch_size: int, name: str,
                     config: DecodeConfig, confidence: bool = False) -> tuple[float, list[Any]]:
    """Decode `sources` and return (seconds, results); a one-sentence warm-up run is not timed."""
    bar = None
    if len(sources) >= 100:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sources), unit="sent", desc=name, file=sys.stderr, leave=False)
    # Warm-up: the first call pays one-off costs (allocator, CUDA context, kernel choice).
    translator.translate(sources[:1], config, batch_size=1)
    try:
        start = time.perf_counter()
        results = translator.translate(sources, config, batch_size=batch_size,
                                       progress=bar.update if bar is not None else None, confidence=confidence)
        seconds = time.perf_counter() - start
    finally:
        if bar is not None:
            bar.close()
    return seconds, results


class _ConfidenceScores:
    """Per-sentence confidence, mean log-probability and chrF, gathered block by block, and their summary."""

    def __init__(self, translator: Translator, lowercase: bool):
        calibrator = translator._require_calibrator()  # before anything is decoded
        self.threshold = calibrator.chrf_threshold
        self.lowercase = lowercase
        self.confidence: list[float] = []
        self.mean_logprob: list[float] = []
        self.chrf: list[float] = []

    def add(self, results: Sequence[Any], references: Sequence[str]) -> None:
        """One block's results (in order); an empty source has no confidence (None)."""
        chrf = metrics.sentence_chrf([r.text for r in results], references, self.lowercase)
        for result, score in zip(results, chrf):
            self.confidence.append(result.confidence)
            self.mean_logprob.append(result.signals["mean_logprob"] if result.signals else None)
            self.chrf.append(score)

    def report(self) -> dict[str, Any]:
        kept = [i for i, c in enumerate(self.confidence) if c is not None]
        confidence, chrf = [self.confidence[i] for i in kept], [self.chrf[i] for i in kept]
        return {"confidence": self.confidence, "sentence_chrf": self.chrf, "confidence_summary": {
            "sentences": len(kept), "mean": sum(confidence) / len(kept) if kept else None,
            "chrf_threshold": self.threshold, "spearman_chrf": metrics.spearman(confidence, chrf),
            "baseline_spearman_chrf": metrics.spearman([self.mean_logprob[i] for i in kept], chrf),
            "reliability": metrics.reliability(confidence, chrf, self.threshold)}}
