"""`translator lab bottleneck`: what one fixed-size context vector costs on long inputs.

The context-vector model must squeeze the whole source into one vector before it writes a
word; attention lets every output step look at every source state. The difference shows on
long sentences, which Multi30k's test set barely has (26 of 1,000 sources over 20 words), so
this view builds a longer split from it: runs of 1, 2 and 3 consecutive test pairs joined
into one source and one reference (in-domain for Multi30k models; a joined pair is the same
text the model already translated sentence by sentence, so the drop with length measures how
much the model cannot hold, not harder vocabulary). BLEU is scored per source-length bucket,
with the output/reference length ratio beside it: models trained on single captions tend to stop
after the first sentence of a joined source, which costs BLEU whatever their encoder (--max_join 1
scores the plain test sentences instead).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from translator.data.registry import load_pairs
from translator.evaluation.metrics import bleu_by_length, score
from translator.inference.translator import Translator
from translator.lab.common import new_figure, save

BUCKETS = ((0, 10), (11, 20), (21, 30), (31, 40), (41, None))


def concatenated_pairs(dataset: str = "multi30k", split: str = "test", per_length: int = 200, max_join: int = 3,
                       data_dir: str | None = None, src_lang: str | None = None, tgt_lang: str | None = None
                       ) -> list[tuple[str, str, int]]:
    """(source, reference, pairs joined) for joins of 1..max_join consecutive pairs, per_length of each."""
    pairs = load_pairs(dataset, split, src_lang, tgt_lang, data_dir)
    out = []
    for k in range(1, max_join + 1):
        starts = range(0, len(pairs) - k + 1, k)[:per_length]  # disjoint runs of k pairs
        for i in starts:
            run = pairs[i:i + k]
            out.append((" ".join(s for s, _ in run), " ".join(t for _, t in run), k))
    return out


def compute(checkpoints: dict[str, str], per_length: int = 200, max_join: int = 3, method: str = "greedy",
            data_dir: str | None = None) -> dict[str, Any]:
    """BLEU by source length (words) of each checkpoint on the concatenated test pairs."""
    if not checkpoints:
        raise ValueError("give at least one --checkpoint LABEL=PATH")
    models = {label: Translator.from_checkpoint(path) for label, path in checkpoints.items()}
    first = next(iter(models.values())).bundle
    data_pairs = concatenated_pairs(first.dataset or "multi30k", "test", per_length, max_join, data_dir,
                                    first.src_lang, first.tgt_lang)
    sources = [s for s, _, _ in data_pairs]
    refs = [r for _, r, _ in data_pairs]
    lengths = [len(s.split()) for s in sources]
    data: dict[str, Any] = {"split": f"{first.dataset or 'multi30k'} test, 1..{max_join} consecutive pairs joined "
                                     f"({per_length} of each)",
                            "sentences": len(sources), "over_20_words": sum(n > 20 for n in lengths),
                            "decoding": method, "checkpoints": checkpoints, "results": {}}
    for label, translator in models.items():
        hyps = [t.text for t in translator.translate(sources, method=method)]
        rows = bleu_by_length(lengths, hyps, refs, BUCKETS)
        for row in rows:  # output length / reference length: a model that stops early loses BLEU for that alone
            idx = [i for i, n in enumerate(lengths) if row["lo"] <= n and (row["hi"] is None or n <= row["hi"])]
            if idx:
                detail = score([hyps[i] for i in idx], [refs[i] for i in idx])["bleu_detail"]
                row["length_ratio"] = detail["sys_len"] / max(1, detail["ref_len"])
        data["results"][label] = rows
    return data


def figure(data: dict[str, Any]) -> Any:
    """BLEU per source-length bucket, one line per model; n per bucket under the ticks."""
    fig = new_figure(8, 4.6)
    ax = fig.add_subplot()
    for label, rows in data["results"].items():
        ax.plot(range(len(rows)), [float("nan") if r["bleu"] is None else r["bleu"] for r in rows], marker="o",
                label=label)
    rows = next(iter(data["results"].values()))
    ax.set_xticks(range(len(rows)), labels=[f"{r['bucket']}\nn={r['n']}" for r in rows])
    ax.set(xlabel="source length (words)", ylabel=f"BLEU ({data['decoding']})",
           title=f"the bottleneck: {data['split']}")
    ax.grid(alpha=0.3)
    ax.legend()
    for label, rows in data["results"].items():  # the output/reference length ratio beside each point
        for i, r in enumerate(rows):
            if r.get("length_ratio") is not None and r["bleu"] is not None:
                ax.annotate(f"len {r['length_ratio']:.2f}", (i, r["bleu"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    return fig


def command(checkpoint: list[str] | str, *, output: str = "lab-bottleneck.png", per_length: int = 200, max_join: int = 3,
            method: str = "greedy", data_dir: str | None = None) -> Path:
    """BLEU by source length for several models on long inputs (concatenated Multi30k test pairs).

    Examples:
        translator lab bottleneck --checkpoint rnn=RNN.ckpt --checkpoint attention=ATT.ckpt --checkpoint transformer=T.ckpt --output bottleneck.png

    Args:
        checkpoint: LABEL=PATH (or PATH: labelled by its file name), one per model, repeated.
        output: the PNG to write (the numbers go beside it as .json).
        per_length: joined sources of each length 1..max_join (disjoint runs of consecutive test pairs).
        max_join: the most test pairs joined into one source.
        method: greedy or beam (beam 5; slower).
        data_dir: folder holding the dataset; None = $TRANSLATOR_DATA_DIR, then data/.
    """
    started = time.perf_counter()
    checkpoints = {}
    for item in [checkpoint] if isinstance(checkpoint, str) else checkpoint:
        label, sep, path = item.partition("=")
        checkpoints[label if sep else Path(item).stem] = path if sep else item
    data = compute(checkpoints, per_length, max_join, method, data_dir)
    return save(figure(data), data, output, started)
