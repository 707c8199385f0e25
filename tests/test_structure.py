"""The layout of layers holds (benchmarks/structure.py reads this tree): no import cycle, no import that points
up a layer, every module in a layer, checkpoint metadata read only by the checkpoint module; and the dotted
names that README.md showed, configs name and old checkpoints store still resolve."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import structure  # noqa: E402


@pytest.fixture(scope="module")
def tree() -> tuple[dict[str, Path], dict[str, set[str]]]:
    files = structure.modules(ROOT)
    return files, {name: structure.imports(name, path, set(files)) for name, path in files.items()}


def test_no_import_cycles_and_no_import_points_up(tree):
    files, graph = tree
    assert len(files) > 50  # the reader found the package
    assert structure.cycles(graph) == []
    per_layer, up = structure.layering(graph)
    assert up == []
    assert structure.UNPLACED not in per_layer, per_layer.get(structure.UNPLACED)


def test_layering_sees_an_import_that_points_up():
    """The check itself: a data module importing the inference layer is reported."""
    graph = {"translator.data.readers": {"translator.inference.translator"}, "translator.inference.translator": set()}
    assert structure.layering(graph)[1] == ["translator.data.readers -> translator.inference.translator"]


def test_checkpoint_metadata_is_read_in_the_checkpoint_module_only(tree):
    files, _ = tree
    readers = structure.metadata_readers(files)
    assert readers and all(r.startswith("translator.artifacts.checkpoint.") for r in readers), readers
    assert structure.task_name_tests(files) == []


def test_only_training_imports_lightning():
    """translate and the app never load Lightning: nothing outside training/ (and the lab and fit command, in
    functions) imports it at module level."""
    for path in sorted((ROOT / "translator").rglob("*.py")):
        relative = path.relative_to(ROOT / "translator").as_posix()
        if relative.startswith(("training/", "lab/")) or relative == "cli.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "import lightning" not in text and "from lightning" not in text, relative


@pytest.mark.parametrize("dotted", [
    "translator.inference.Translator", "translator.inference.Chatbot", "translator.evaluate_cmd.evaluate",
    "translator.app.launch", "translator.data.load_pairs", "translator.decoding.beam_search",
    "translator.decoding.DecodeConfig", "translator.decoding.CHAT_DECODING", "translator.runtime.tune_malloc",
    "translator.models.Transformer", "translator.models.AttentionSeq2Seq", "translator.models.LSTMSeq2Seq",
    "translator.cli.TRAINER_DEFAULTS",
])
def test_public_names_resolve(dotted):
    """Names README.md shows (or showed before the layout), configs name and the benchmarks' older runs use."""
    module, _, name = dotted.rpartition(".")
    assert getattr(importlib.import_module(module), name) is not None


def test_an_old_checkpoint_loads(tmp_path):
    """A checkpoint records its model as `translator.models.<module>.<Class>` and configs as
    `translator.models.<Class>`: both still build the model, and the bundle loads."""
    from translator.artifacts.checkpoint import BUNDLE_KEY, load_bundle, model_class

    path = make_tiny_checkpoint(tmp_path / "t.ckpt", steps=1)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint[BUNDLE_KEY]["model"]["class_path"] == "translator.models.transformer.Transformer"
    assert model_class({"class_path": "translator.models.Transformer"}).__name__ == "Transformer"
    assert load_bundle(path).model.__class__.__name__ == "Transformer"
