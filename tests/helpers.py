"""Tiny corpora and tiny self-contained checkpoints that tests build for themselves."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import torch

from translator.artifacts.checkpoint import BUNDLE_KEY, make_bundle
from translator.models.attention import AttentionSeq2Seq
from translator.models.lstm import LSTMSeq2Seq
from translator.models.transformer import Transformer
from translator.tokenizer import Tokenizer
from translator.training.loss import label_smoothed_loss
from translator.training.system import Seq2SeqSystem

WORDS = "a man a woman the dog runs red ball two kids play in park with green hat on street".split()
TINY_MODELS = {
    "transformer": lambda v, pad: Transformer(v, v, pad, d_model=32, num_heads=2, num_encoder_layers=1,
                                              num_decoder_layers=1, ff_size=64, dropout=0.0),
    "attention": lambda v, pad: AttentionSeq2Seq(v, v, pad, emb_size=24, enc_hidden_size=24, dec_hidden_size=32,
                                                 attention_size=24, dropout=0.0),
    "lstm": lambda v, pad: LSTMSeq2Seq(v, v, pad, emb_size=24, hidden_size=32, num_layers=1, dropout=0.0),
}


def tiny_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(n)]


def write_multi30k_like(root: Path, n_train: int = 200, n_val: int = 20, n_test: int = 20,
                        transform=str.upper) -> Path:
    """A folder laid out like ../shared/data/multi30k (de = text, en = transform(text))."""
    folder = root / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2), ("test_2016_flickr", n_test, 3)):
        src = tiny_sentences(n, seed)
        for lang, lines in (("de", src), ("en", [transform(s) for s in src]), ("fr", src)):
            (folder / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_chatbot_ko_like(root: Path, n: int = 160) -> Path:
    """A folder laid out like ../shared/data/chatbot-ko (ChatbotData.csv: Q, A, label)."""
    folder = root / "chatbot-ko"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(folder / "ChatbotData.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Q", "A", "label"])
        for question in tiny_sentences(n, seed=4):
            writer.writerow([question, " ".join(rng.choice(WORDS) for _ in range(4)), 0])
    return root


def write_dailydialog_like(root: Path) -> Path:
    """A folder laid out like ../shared/data/dailydialog (dialogues_<split>.txt, turns end with __eou__)."""
    for split, folder, seed in (("train", "train", 5), ("validation", "validation", 6), ("test", "test", 7)):
        path = root / "dailydialog" / folder
        path.mkdir(parents=True, exist_ok=True)
        turns = tiny_sentences(240 if split == "train" else 24, seed)
        dialogues = [" __eou__ ".join(turns[i:i + 4]) + " __eou__" for i in range(0, len(turns), 4)]
        (path / f"dialogues_{split}.txt").write_text("\n".join(dialogues) + "\n", encoding="utf-8")
    return root


def make_tiny_checkpoint(path: Path, kind: str = "transformer", steps: int = 150, dataset: str = "multi30k",
                         src_lang: str = "de", tgt_lang: str = "en", context_turns: int = 0,
                         seed: int = 0, **data: object) -> Path:
    """Train a tiny model to copy short sentences for `steps` steps and save a translator checkpoint.

    Uses the trainer's loss (`label_smoothed_loss`) and the trainer's bundle writer (`make_bundle`),
    in the layout Lightning writes, so `load_bundle` and everything above it is exercised; only the
    training loop is a short manual one. `data` adds data options (e.g. task, context_dropout).
    """
    torch.manual_seed(seed)
    texts = tiny_sentences(300, seed)
    tokenizer = Tokenizer.train(texts, texts, vocab_size=400)
    vocab = tokenizer.src_vocab_size
    model = TINY_MODELS[kind](vocab, tokenizer.pad_id)
    system = Seq2SeqSystem(model, label_smoothing=0.0, val_bleu=False)
    system.tokenizer = tokenizer
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    ids = tokenizer.encode_src(texts)
    for step in range(steps):
        batch_ids = [ids[(step * 32 + i) % len(ids)] for i in range(32)]
        batch = collate_copy(batch_ids, tokenizer)
        logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])  # (B, T, V)
        loss, _ = label_smoothed_loss(logits.flatten(0, 1), batch["tgt_out"].flatten(), 0.0, tokenizer.pad_id,
                                      fused=False)
        optim.zero_grad()
        loss.backward()
        optim.step()
    model.eval()
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": dict(system.hparams),
        BUNDLE_KEY: make_bundle(model.config(), tokenizer, {"dataset": dataset, "src_lang": src_lang,
                                                            "tgt_lang": tgt_lang, "context_turns": context_turns,
                                                            **data}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def collate_copy(batch_ids: list[list[int]], tokenizer: Tokenizer) -> dict[str, torch.Tensor]:
    """src = ids, target = the same ids: a copy task batch (B, S) / (B, T)."""
    pad, bos, eos = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    width = max(len(x) for x in batch_ids)
    src = torch.full((len(batch_ids), width), pad)
    tgt_in = torch.full((len(batch_ids), width + 1), pad)
    tgt_out = torch.full((len(batch_ids), width + 1), pad)
    for row, ids in enumerate(batch_ids):
        src[row, : len(ids)] = torch.tensor(ids)
        tgt_in[row, : len(ids) + 1] = torch.tensor([bos, *ids])
        tgt_out[row, : len(ids) + 1] = torch.tensor([*ids, eos])
    return {"src": src, "src_mask": src != pad, "tgt_in": tgt_in, "tgt_out": tgt_out}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`translator.cli.main(argv)` in-process -> (exit code, stdout, stderr)."""
    from translator.cli import main

    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
