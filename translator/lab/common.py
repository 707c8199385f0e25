"""What every lab view shares: writing PNG + JSON, loading a model from a config or checkpoint,
real data, and the short training some views need (through the real trainer)."""
from __future__ import annotations

import dataclasses
import resource
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from translator.artifacts.checkpoint import build_model, load_bundle
from translator.atomic import atomic_open
from translator.evaluation.report import write_json
from translator.models.base import Seq2Seq
from translator.tokenizer import Tokenizer

#: Figures of the lab are small: 100 dpi, a few inches.
DPI = 100


def check_output(output: str | Path) -> Path:
    """The PNG path of a lab command (its JSON goes beside it, same name, .json)."""
    path = Path(output)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--output must name a .png file (the numbers go beside it as .json), got {output!r}")
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"--output {output} is a directory; give a file name ending in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save(fig: Any, data: dict[str, Any], output: str | Path, started: float) -> Path:
    """Write fig to output (.png) and data (plus the wall time and this process's CPU time, imports
    included: on a shared machine the wall time mostly measures the others) to the .json beside it."""
    png = check_output(output)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    data = {**data, "wall_seconds": round(time.perf_counter() - started, 2),
            "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2)}
    with atomic_open(png, "wb") as f:
        fig.savefig(f, dpi=DPI, format="png")
    write_json(data, png.with_suffix(".json"))
    print(f"wrote {png} and {png.with_suffix('.json')} ({data['wall_seconds']:.1f} s, "
          f"{data['process_cpu_seconds']:.1f} s CPU)")
    return png


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    """A bare Figure (no pyplot: no global state shared between concurrent app requests); layout None
    for big grids, where the constrained layout costs as much as drawing (attention: 1.8 s vs 0.96 s)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def model_from(source: str | Path, src_vocab_size: int = 8000, tgt_vocab_size: int = 8000) -> tuple[Seq2Seq, str]:
    """A model from a checkpoint (.ckpt, its trained weights) or a training config (.yaml, fresh weights;
    vocabulary sizes as given, since they come from the data) -> (model, what it is)."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no such config or checkpoint: {source}")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))["model"]["model"]
        except (KeyError, TypeError):
            raise ValueError(f"{source}: no model.model section (class_path / init_args)") from None
        init = dict(config.get("init_args") or {})
        init.setdefault("src_vocab_size", src_vocab_size)
        init.setdefault("tgt_vocab_size", tgt_vocab_size)
        model = build_model({"class_path": config["class_path"], "init_args": init}, source=str(source))
        return model, f"config {path.name} (vocabulary {init['src_vocab_size']}/{init['tgt_vocab_size']})"
    return load_bundle(path).model, f"checkpoint {path.name}"


def encode_one(tokenizer: Tokenizer, text: str, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """One sentence -> src (1, S), src_mask (1, S)."""
    ids = tokenizer.encode_src([text])[0] if text.strip() else []
    if not ids:
        raise ValueError("the sentence is empty; give a sentence to look at")
    src = torch.tensor([ids], dtype=torch.long, device=device)
    return src, torch.ones_like(src, dtype=torch.bool)


def pieces(tokenizer: Tokenizer, ids: list[int], side: str = "tgt") -> list[str]:
    """Token ids -> their SentencePiece pieces (for tick labels)."""
    sp = tokenizer.src if side == "src" else tokenizer.tgt
    return [sp.id_to_piece(int(i)) for i in ids]


def label(piece: str) -> str:
    """A SentencePiece piece as a tick label: '▁' marks a word start."""
    text = piece.replace("▁", " ").strip()
    return text if text else "▁"


def greedy_ids(model: Seq2Seq, tokenizer: Tokenizer, src: Tensor, src_mask: Tensor, max_len: int = 60) -> list[int]:
    """The model's greedy output for src (1, S): token ids without bos/eos."""
    from translator.decoding import greedy_decode

    hyps = greedy_decode(model, src, src_mask, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                         pad_id=tokenizer.pad_id, unk_id=tokenizer.unk_id, max_len=max_len)
    return list(hyps[0][0].tokens)


# ---- short training through the real trainer ------------------------------------------------

@dataclasses.dataclass
class ShortRun:
    """Options of the short trainings behind gradients / exposure (Multi30k de->en by default)."""

    dataset: str = "multi30k"
    data_dir: str | None = None
    vocab_size: int = 4000
    max_tokens: int = 2000
    steps: int = 150
    lr: float = 2e-3
    seed: int = 1234
    cache_dir: str = "data/cache"


def datamodule(run: ShortRun) -> Any:
    """The real DataModule for a short run (tokenizer trained once and cached under data/cache)."""
    from translator.training.datamodule import Seq2SeqDataModule

    dm = Seq2SeqDataModule(dataset=run.dataset, data_dir=run.data_dir, vocab_size=run.vocab_size,
                           max_tokens=run.max_tokens, max_len=64, seed=run.seed, cache_dir=run.cache_dir)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def short_fit(model: Seq2Seq, dm: Any, run: ShortRun, callbacks: list[Any] = (), clip: float | None = 1.0,
              **system_options: Any) -> Any:
    """Train `model` for run.steps optimizer steps with Seq2SeqSystem (the trainer `translator fit` uses)
    -> the system. No checkpoints, logs or validation: the callbacks measure what a view shows."""
    import lightning as L

    from translator.training.system import Seq2SeqSystem

    L.seed_everything(run.seed, verbose=False)
    system = Seq2SeqSystem(model, lr=run.lr, warmup_steps=20, lr_schedule="constant", val_bleu=False,
                           label_smoothing=0.0, compile_loss=False, **system_options)
    trainer = L.Trainer(max_steps=run.steps, gradient_clip_val=clip, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, use_distributed_sampler=False, callbacks=list(callbacks),
                        accelerator="cpu", devices=1)
    trainer.fit(system, datamodule=dm)
    return system



@torch.inference_mode()
def step_through(model: Seq2Seq, src: Tensor, src_mask: Tensor, tgt_in: list[int], need_attention: bool = False
                 ) -> tuple[Tensor, Tensor | None]:
    """Feed tgt_in (bos + prefix) one token at a time through the decoder interface, for src (1, S)
    -> logits (T, V) after each token, and each step's attention over the source (T, S) or None."""
    state = model.init_state(model.encode(src, src_mask), src_mask, need_attention=need_attention)
    logits, attention = [], []
    for token in tgt_in:
        step, state = model.decode_step(torch.tensor([token], device=src.device), state)  # (1, V)
        logits.append(step[0].float())
        if state.attention is not None:
            attention.append(state.attention[0].float())
    return torch.stack(logits), torch.stack(attention) if attention else None
