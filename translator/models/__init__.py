"""The three model families behind one interface (see base.py)."""
from translator.models.base import DecoderState, Seq2Seq

__all__ = ["DecoderState", "Seq2Seq"]
