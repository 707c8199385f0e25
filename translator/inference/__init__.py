"""Checkpoint -> text: `Translator`, `Chatbot` and the `translate` command, over an engine (translator/engines/).

    translator.py  Translator: a checkpoint (or ensemble, or exported directory) and its engine -> translations
    chatbot.py     Chatbot: a chat checkpoint -> replies, with every candidate and the terms of its score
    confidence.py  per-sentence confidence: signals the model already has, combined by a small calibrator
    streaming.py   `translate`'s line source and sink: chunks as they arrive, flushed, bounded memory
    command.py     `translator translate`: one output line per input line (`translate_file`, `format_output`)
"""
from translator.inference.chatbot import ChatReply, Chatbot, ReplyCandidate, flatten_history
from translator.inference.command import format_output, translate_file
from translator.inference.translator import Translation, Translator

__all__ = ["ChatReply", "Chatbot", "ReplyCandidate", "Translation", "Translator", "flatten_history", "format_output",
           "translate_file"]
