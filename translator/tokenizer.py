"""SentencePiece tokenizer: train, encode/decode in batches, and travel inside a checkpoint.

Ids are fixed for every model we train: pad 0, unk 1, bos (<sos>) 2, eos 3, then the
user-defined `<sep>` (joins dialogue turns) at 4. Byte fallback is on, so no input is ever
unrepresentable: unseen characters (emoji, rare Hangul) become byte pieces, not <unk>.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import sentencepiece as spm

from translator.atomic import write_bytes

if TYPE_CHECKING:
    import torch

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SEP_TOKEN = "<sep>"
_SEED_RANGE = 0xFFFFFFFF  # SentencePiece seeds are uint32, and 0xFFFFFFFF itself means "unseeded"


def _train_model(texts: Iterable[str], vocab_size: int, model_type: str, character_coverage: float,
                 seed_size: int = 1_000_000) -> bytes:
    """Train one SentencePiece model on `texts` and return its serialized bytes."""
    lines = [t.strip() for t in texts if t and t.strip()]
    if not lines:
        raise ValueError("cannot train a tokenizer on an empty corpus (no non-empty lines)")
    model = io.BytesIO()
    try:
        _run_trainer(lines, model, vocab_size, model_type, character_coverage, seed_size)
    except RuntimeError as err:
        message = str(err)
        if "Vocabulary size is smaller than required_chars" in message:
            needed = message.rsplit("vs", 1)[-1].split(".")[0].strip()
            raise ValueError(f"tokenizer vocab_size={vocab_size} is too small: byte fallback (256 byte pieces), "
                             f"the special tokens and the corpus characters need at least {needed}") from None
        raise ValueError(f"SentencePiece training failed: {message.splitlines()[0]}") from None
    return model.getvalue()


def _run_trainer(lines: list[str], model: io.BytesIO, vocab_size: int, model_type: str,
                 character_coverage: float, seed_size: int) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=True,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        pad_piece="<pad>", unk_piece="<unk>", bos_piece="<sos>", eos_piece="<eos>",
        user_defined_symbols=[SEP_TOKEN],
        hard_vocab_limit=False,  # tiny corpora get a smaller vocabulary instead of an error
        input_sentence_size=seed_size,
        shuffle_input_sentence=True,
        split_digits=True,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
        num_threads=max(1, min(4, os.cpu_count() or 1)),
    )


def _load(model_bytes: bytes) -> spm.SentencePieceProcessor:
    """A SentencePiece model from its bytes; ValueError saying why when they are not one of ours."""
    if not isinstance(model_bytes, bytes):
        raise ValueError(f"a SentencePiece model is bytes, not {type(model_bytes).__name__}")
    proc = spm.SentencePieceProcessor()
    try:
        proc.LoadFromSerializedProto(model_bytes)
    except RuntimeError as err:  # "INTERNAL: src/...cc(109) [ParseFromArray...]", "<0x05> is already defined."
        reason = str(err).removeprefix("INTERNAL: ").strip()
        reason = "the bytes do not parse (truncated or not a model)" if "ParseFromArray" in reason else reason
        raise ValueError(f"not a SentencePiece model ({len(model_bytes):,} bytes: {reason})") from None
    special = (proc.pad_id(), proc.unk_id(), proc.bos_id(), proc.eos_id())
    if special != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise ValueError(f"a SentencePiece model with special ids (pad, unk, bos, eos) = {special}, not "
                         f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}: not one trained by translator")
    return proc


class Tokenizer:
    """Source and target SentencePiece models (the same object when joint)."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID
    sep_token = SEP_TOKEN

    def __init__(self, src_model: bytes, tgt_model: bytes | None = None):
        self._src_bytes = src_model
        self._tgt_bytes = tgt_model
        self.src = _load(src_model)
        self.tgt = self.src if tgt_model is None else _load(tgt_model)
        self._byte_values = None

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def train(cls, src_texts: Sequence[str], tgt_texts: Sequence[str], vocab_size: int = 8000,
              model_type: str = "unigram", character_coverage: float = 1.0, joint: bool = True) -> "Tokenizer":
        """Train a joint model on source + target text, or one model per side (`joint=False`)."""
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"tokenizer model_type must be 'unigram' or 'bpe', got {model_type!r}")
        if joint:
            return cls(_train_model(list(src_texts) + list(tgt_texts), vocab_size, model_type, character_coverage))
        return cls(_train_model(src_texts, vocab_size, model_type, character_coverage),
                   _train_model(tgt_texts, vocab_size, model_type, character_coverage))

    @property
    def joint(self) -> bool:
        return self._tgt_bytes is None

    def to_dict(self) -> dict[str, bytes | None]:
        """Plain bytes for a checkpoint (loads with `torch.load(weights_only=True)`)."""
        return {"src": self._src_bytes, "tgt": self._tgt_bytes}

    @classmethod
    def from_dict(cls, data: dict) -> "Tokenizer":
        """The tokenizer of `to_dict`'s layout; ValueError when `data` is not one (damaged or crafted)."""
        if not isinstance(data, dict) or "src" not in data:
            raise ValueError(f"expected {{'src': bytes, 'tgt': bytes or None}}, got {type(data).__name__}")
        return cls(data["src"], data.get("tgt"))

    def save(self, path: str | Path) -> None:
        """Write `path` (a .model file when joint; `path` and `path`.tgt otherwise), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, payload in ((path, self._src_bytes), (Path(f"{path}.tgt"), self._tgt_bytes)):
            if payload is None:
                continue
            write_bytes(target, payload)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {path}")
        tgt = Path(f"{path}.tgt")
        try:
            return cls(path.read_bytes(), tgt.read_bytes() if tgt.is_file() else None)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    # ---- sizes -------------------------------------------------------------------------
    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    @property
    def sep_id(self) -> int:
        return self.src.piece_to_id(SEP_TOKEN)

    # ---- encode / decode ---------------------------------------------------------------
    def encode_src(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Source ids, no bos/eos (the encoder reads the sentence only); num_threads None = SentencePiece's default."""
        return self.src.encode(list(texts), num_threads=num_threads)

    def encode_tgt(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Target ids without bos/eos; the collate function adds them (tgt_in / tgt_out)."""
        return self.tgt.encode(list(texts), num_threads=num_threads)

    def encode_sampled(self, texts: Sequence[str], side: str, alpha: float, nbest_size: int,
                       seed: int) -> list[list[int]]:
        """Sampled segmentations of `texts` (subword regularization, Kudo 2018), the same for the same seed.

        `side` is "src" or "tgt". Unigram models sample from the `nbest_size` best segmentations
        (-1 = the whole lattice) with smoothing `alpha`; BPE models apply BPE-dropout with
        probability `alpha` (`nbest_size` is ignored). Reproducible: SentencePiece's generator is
        seeded from `seed`, and one thread encodes the batch in order (with several, the draws
        would depend on how sentences are shared out between them).
        """
        if side not in ("src", "tgt"):
            raise ValueError(f"side must be 'src' or 'tgt', got {side!r}")
        proc = self.src if side == "src" else self.tgt
        spm.set_random_generator_seed(int(seed) % _SEED_RANGE)
        return proc.encode(list(texts), enable_sampling=True, alpha=float(alpha), nbest_size=int(nbest_size),
                           num_threads=1)

    def decode_src(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self.src.decode([list(x) for x in ids])

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Text from target ids; pad/bos/eos are dropped, decoding stops at the first eos."""
        cleaned = []
        for seq in ids:
            out = []
            for i in seq:
                i = int(i)
                if i == EOS_ID:
                    break
                if i not in (PAD_ID, BOS_ID):
                    out.append(i)
            cleaned.append(out)
        return self.tgt.decode(cleaned)

    def src_pieces(self, text: str) -> list[str]:
        """Source pieces of one sentence, for attention-plot axis labels."""
        return self.src.encode(text, out_type=str)

    def tgt_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tgt.id_to_piece(int(i)) for i in ids]

    def tgt_byte_values(self) -> "torch.Tensor":
        """(V,) long: the byte value of each byte-fallback piece of the target vocabulary, -1 for others.

        Decoders use it to emit byte pieces only as whole UTF-8 characters.
        """
        import torch

        if self._byte_values is None:
            values = [-1] * self.tgt_vocab_size
            for i in range(self.tgt_vocab_size):
                if self.tgt.is_byte(i):
                    values[i] = int(self.tgt.id_to_piece(i)[3:-1], 16)  # "<0xE2>" -> 0xE2
            self._byte_values = torch.tensor(values, dtype=torch.long)
        return self._byte_values
