"""Keeps `translator.app.launch` (shown in README.md before the layout moved it) working: see translator/serve/app.py."""
from translator.serve.app import launch

__all__ = ["launch"]
