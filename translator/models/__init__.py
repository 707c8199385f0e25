"""The three model families behind one interface (see base.py)."""
from translator.models.attention import AttentionSeq2Seq, AttentionState
from translator.models.base import DecoderState, Seq2Seq
from translator.models.lstm import LSTMSeq2Seq, LSTMState
from translator.models.transformer import Transformer, TransformerState

__all__ = [
    "AttentionSeq2Seq", "AttentionState", "DecoderState", "LSTMSeq2Seq", "LSTMState", "Seq2Seq",
    "Transformer", "TransformerState",
]
