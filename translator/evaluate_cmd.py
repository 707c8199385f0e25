"""Keeps `translator.evaluate_cmd.evaluate` (shown in README.md before the layout moved it) working: see
translator/evaluation/command.py."""
from translator.evaluation.command import evaluate

__all__ = ["evaluate"]
