"""Evaluation figures: BLEU by source length, confidence reliability, an attention heatmap (bare matplotlib
Figures, no pyplot state)."""


from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


from translator.atomic import atomic_open

def plot_reliability(rows: Sequence[Mapping[str, Any]], threshold: float, path: str | os.PathLike,
                     title: str = "Confidence reliability") -> Path:
    """A reliability diagram (PNG): per confidence bin, the share of sentences reaching chrF >= threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("nothing to plot: no sentence has a confidence")
    fig = Figure(figsize=(5.5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.bar([(r["lo"] + r["hi"]) / 2 for r in rows], [r["reach_share"] for r in rows],
           width=[(r["hi"] - r["lo"]) * 0.9 for r in rows], alpha=0.7, label=f"share with chrF >= {threshold:g}")
    for r in rows:
        ax.annotate(f"n={r['n']}", ((r["lo"] + r["hi"]) / 2, r["reach_share"]), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("confidence")
    ax.set_ylabel(f"share of sentences with chrF >= {threshold:g}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def plot_bleu_by_length(
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike,
    title: str = "BLEU by source length",
    xlabel: str = "source length (words)",
) -> Path:
    """Write a PNG with one BLEU-vs-bucket line per label; x ticks show each bucket's sentence count."""
    # Figure + Agg canvas instead of pyplot: no global backend switch, safe inside the Gradio app.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("nothing to plot: results is empty")
    buckets: dict[str, tuple[int, set[int]]] = {}
    for rows in results.values():
        for row in rows:
            lo, counts = buckets.setdefault(row["bucket"], (row["lo"], set()))
            counts.add(row["n"])
    order = sorted(buckets, key=lambda b: buckets[b][0])
    # Same test set -> same n for every label; show all counts if labels were scored on different sets.
    ticks = [f"{b}\nn={'/'.join(str(c) for c in sorted(buckets[b][1]))}" for b in order]

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, rows in results.items():
        by_bucket = {row["bucket"]: row for row in rows}
        ys = [by_bucket.get(b, {}).get("bleu") for b in order]
        ys = [float("nan") if y is None else y for y in ys]
        ax.plot(range(len(order)), ys, marker="o", label=label)  # NaN leaves a gap for empty buckets
    ax.set_xticks(range(len(order)), ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("BLEU")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def attention_figure(src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Any) -> Any:
    """Heatmap of attention (T_out, S) (a torch tensor): one row per output piece, one column per
    source piece; a matplotlib Figure."""
    from matplotlib.figure import Figure

    weights = attention.float().cpu().numpy()[: len(tgt_pieces), : len(src_pieces)]  # (T, S)
    rows, cols = weights.shape
    # A bare Figure (no pyplot): no global state shared between concurrent requests.
    fig = Figure(figsize=(min(3 + 0.45 * cols, 14), min(2 + 0.35 * rows, 12)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    ax.set_xticks(range(cols), labels=[_piece(p) for p in src_pieces[:cols]], rotation=60, ha="right")
    ax.set_yticks(range(rows), labels=[_piece(p) for p in tgt_pieces[:rows]])
    ax.set_xlabel("source pieces")
    ax.set_ylabel("output pieces")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention")
    return fig


def _piece(piece: str) -> str:
    """A SentencePiece piece as a tick label: '▁' marks a word start."""
    text = piece.replace("▁", " ").strip()
    return text if text else "▁"
