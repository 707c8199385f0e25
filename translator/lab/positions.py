"""`translator lab positions`: the sinusoidal position table and how similar positions are.

Attention itself is blind to order (a set of keys), so the Transformer adds a position vector to
every embedding: PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(p / 10000^(2i/D)). Low
dimensions wave fast, high ones slowly; the dot product PE[p]·PE[q] depends only on p - q and
falls off with the distance, which is what lets attention tell near from far.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from translator.lab.common import model_from, new_figure, save
from translator.models.transformer import sinusoids


def compute(length: int = 64, d_model: int = 256, source: str | None = None) -> dict[str, Any]:
    """The table (length, D) and its dot-product similarity (length, length); D from a Transformer
    config or checkpoint when given (the same `sinusoids` the model adds)."""
    if length < 2 or d_model < 2 or d_model % 2:
        raise ValueError(f"need length >= 2 and an even d_model >= 2, got length={length}, d_model={d_model}")
    what = "sinusoids(length, d_model)"
    if source is not None:
        model, what = model_from(source)
        if getattr(model, "positions", None) != "sinusoidal":
            raise ValueError(f"{source} is not a Transformer with sinusoidal positions")
        d_model = model.d_model
        table = model.pos_table[:length].float() if length <= model.pos_table.size(0) else sinusoids(length, d_model)
    else:
        table = sinusoids(length, d_model)  # (L, D)
    similarity = table @ table.T  # (L, L)
    return {"length": length, "d_model": d_model, "source": what, "table": table.double().round(decimals=4).tolist(),
            "similarity": similarity.double().round(decimals=3).tolist(),
            "similarity_to_first": similarity[0].double().round(decimals=3).tolist(),
            "shift_invariant": bool((similarity[1:, 1:] - similarity[:-1, :-1]).abs().max() < 1e-3)}


def figure(data: dict[str, Any]) -> Any:
    """Left: the table (positions × dimensions); middle: PE[p]·PE[q]; right: similarity to position 0."""
    import numpy as np

    table, sim = np.array(data["table"]), np.array(data["similarity"])
    fig = new_figure(15, 4.4)
    a, b, c = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    im = a.imshow(table, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    a.set(title=f"sinusoidal positions (D = {data['d_model']})", xlabel="dimension", ylabel="position")
    fig.colorbar(im, ax=a, shrink=0.8)
    im = b.imshow(sim, cmap="viridis")
    b.set(title="PE[p] · PE[q]: depends on p - q only", xlabel="position q", ylabel="position p")
    fig.colorbar(im, ax=b, shrink=0.8)
    c.plot(sim[0], marker=".", lw=1)
    c.set(title="similarity to position 0", xlabel="position q", ylabel="PE[0] · PE[q]")
    c.grid(alpha=0.3)
    return fig


def command(source: str | None = None, *, output: str = "lab-positions.png", length: int = 64,
            d_model: int = 256) -> Path:
    """The sinusoidal position table and the dot-product similarity of positions.

    Examples:
        translator lab positions --output positions.png
        translator lab positions --source translator/configs/transformer.yaml --length 100 --output positions.png

    Args:
        source: a Transformer config or checkpoint (its d_model and table); omitted: --d_model.
        output: the PNG to write (the numbers go beside it as .json).
        length: positions to show.
        d_model: width of the table when no source is given.
    """
    started = time.perf_counter()
    data = compute(length, d_model, source)
    return save(figure(data), data, output, started)
