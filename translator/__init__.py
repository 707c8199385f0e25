"""translator: seq2seq translation and chat with LSTM, attention and Transformer models."""
__version__ = "0.1.0"
