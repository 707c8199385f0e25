"""Load a self-contained checkpoint (weights + model config + tokenizer) safely.

Loading uses `torch.load(weights_only=True)`: no arbitrary pickle runs, and the model class is
looked up only inside `translator.models`. A directory written by `translator export` (a
CTranslate2 model) is a checkpoint too: its metadata file is read here (`read_export`), its
weights by translator/ct2_engine.py.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from translator.atomic import atomic_open
from translator.data.registry import get_spec, resolve_languages
from translator.models.base import Seq2Seq
from translator.tokenizer import Tokenizer

BUNDLE_KEY = "translator"  # checkpoint["translator"] = {"model": config, "tokenizer": bytes, "data": {...}}
EXPORT_FILE = "translator_export.json"  # in an exported directory: model config, data, tokenizer files, source


@dataclasses.dataclass
class Bundle:
    """What a checkpoint holds: the model (eval mode), its tokenizer, and plain metadata."""

    model: Seq2Seq
    tokenizer: Tokenizer
    path: Path
    data: dict[str, Any]  # the DataModule options it was trained with (dataset, languages, ...)
    hparams: dict[str, Any]
    parent: dict[str, Any] | None = None  # the checkpoint it was fine-tuned from (translator/finetune.py `lineage`)
    calibrator: dict[str, Any] | None = None  # its confidence calibrator (translator/confidence.py), if calibrated

    @property
    def lineage(self) -> str:
        """`fine-tuned from PATH (sha256 …, data) ← ...`, or "" for a model trained from scratch."""
        return describe_lineage(self.parent)

    @property
    def src_lang(self) -> str | None:
        return self.data.get("src_lang")

    @property
    def tgt_lang(self) -> str | None:
        return self.data.get("tgt_lang")

    @property
    def dataset(self) -> str | None:
        return self.data.get("dataset")

    @property
    def architecture(self) -> str:
        return getattr(self.model, "architecture", None) or type(self.model).__name__  # engines name themselves

    @property
    def task(self) -> str:
        """"chat" or "translation": as recorded, else the task of the dataset it was trained on."""
        return task_of(self.data)

    @property
    def chat_context_turns(self) -> int:
        """Turns the chatbot sends, the message included (1 = the message alone), as trained."""
        return _chat_context_turns(self.data)

    @property
    def empty_source(self) -> list[int] | None:
        """The empty context (`<sep>` alone) when the model learned p(reply) through context dropout."""
        if self.task == "chat" and float(self.data.get("context_dropout") or 0.0) > 0.0:
            return [self.tokenizer.sep_id]
        return None


def describe_lineage(parent: dict[str, Any] | None) -> str:
    """One line: `fine-tuned from PATH (sha256 abcd1234…, multi30k en→fr) ← GRANDPARENT ...`, or ""."""
    parts = []
    while parent:
        pair = f" {parent.get('src_lang')}→{parent.get('tgt_lang')}" if parent.get("src_lang") else ""
        parts.append(f"{parent.get('path')} (sha256 {str(parent.get('sha256'))[:12]}…, "
                     f"{parent.get('dataset') or 'unknown data'}{pair})")
        parent = parent.get("parent")
    return "fine-tuned from " + " ← ".join(parts) if parts else ""


def make_bundle(model_config: dict[str, Any], tokenizer: Tokenizer | None, data: dict[str, Any]) -> dict[str, Any]:
    """The bundle every checkpoint carries under BUNDLE_KEY (the one writer of its layout):
    plain data only, so the checkpoint loads with weights_only=True."""
    return {"format": 1, "model": model_config, "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
            "data": data}


#: Context length of dailydialog checkpoints written before the length was recorded (the old default).
LEGACY_CONTEXT_TURNS = 3


def task_of(data: dict[str, Any]) -> str:
    """The task of a checkpoint's data options: recorded since this version, else its dataset's."""
    if data.get("task"):
        return str(data["task"])
    try:
        return get_spec(str(data.get("dataset"))).task  # checkpoints written before the task was recorded
    except ValueError:
        return "translation"


def _chat_context_turns(data: dict[str, Any]) -> int:
    if data.get("chat_context_turns") is not None:
        return int(data["chat_context_turns"])
    try:
        turns = get_spec(str(data.get("dataset"))).chat_context_turns(int(data.get("context_turns")
                                                                            or LEGACY_CONTEXT_TURNS))
    except ValueError:
        return 1
    return turns or 1


def checkpoint_task(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(task, data options) of a checkpoint or exported directory, read without building its model."""
    if is_exported(path):
        data = dict(read_export(path)[0].get("data") or {})
    else:
        data = dict(read_checkpoint(path)[BUNDLE_KEY].get("data") or {})
    return task_of(data), data


def is_exported(path: str | Path) -> bool:
    """Whether `path` is a directory written by `translator export`."""
    return Path(path).is_dir() and (Path(path) / EXPORT_FILE).is_file()


def read_export(path: str | Path) -> tuple[dict[str, Any], Tokenizer]:
    """(metadata, tokenizer) of an exported directory, with one clear message per problem."""
    path = Path(path)
    if not is_exported(path):
        raise ValueError(f"{path} is not an exported model (no {EXPORT_FILE}); write one with "
                         "`translator export CKPT --output DIR`")
    try:
        meta = json.loads((path / EXPORT_FILE).read_text(encoding="utf-8"))
        files = meta["tokenizer"]
        src = (path / files["src"]).read_bytes()
        tgt = (path / files["tgt"]).read_bytes() if files.get("tgt") else None
        tokenizer = Tokenizer(src, tgt)
        meta["model"]["init_args"]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"{path}: unreadable exported model ({type(err).__name__}: {str(err)[:120]})") from None
    return meta, tokenizer


def checkpoint_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer a checkpoint (.ckpt) or exported directory carries, without building its model
    (a model trained from it, e.g. a chat backward model or a fine-tuning run, then shares its pieces)."""
    if is_exported(path):
        return read_export(path)[1]
    bundle = read_checkpoint(path)[BUNDLE_KEY]
    if bundle.get("tokenizer") is None:
        raise ValueError(f"{path} carries no tokenizer; it was not written by translator's trainer")
    return Tokenizer.from_dict(bundle["tokenizer"])


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load(weights_only=True) with one clear message for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint path is a directory, not a file: {path} (an exported model "
                                f"directory has {EXPORT_FILE}; write one with `translator export CKPT --output DIR`)")
    try:
        with warnings.catch_warnings():  # torch warns about the legacy format of some foreign files
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files (KeyError, EOFError, RuntimeError...)
        raise ValueError(unreadable_reason(path, err)) from None
    if not isinstance(checkpoint, dict) or BUNDLE_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a translator checkpoint (no '{BUNDLE_KEY}' bundle or no weights); "
                         "train one with `translator fit --config translator/configs/transformer.yaml`")
    return checkpoint


def unreadable_reason(path: Path, err: BaseException) -> str:
    """Why torch.load failed on `path`, said in terms of the file (torch's own text names its internals)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as os_err:
        return f"{path}: cannot read file ({os_err.strerror or os_err})"
    if size == 0:
        return f"{path} is empty (0 bytes), not a checkpoint; was its writing or copying interrupted?"
    refused = isinstance(err, pickle.UnpicklingError) and (zipfile.is_zipfile(path) or head.startswith(b"\x80"))
    if refused:  # a real pickle (protocol 2+) or torch archive with objects other than tensors and plain data
        return (f"{path} holds objects that safe (weights_only) loading refuses to unpickle; it was not written by "
                "translator's trainer, and loading it unsafely could run arbitrary code")
    if head.startswith(b"PK\x03\x04"):
        return (f"{path} is a damaged or truncated torch checkpoint ({size:,} bytes; the archive does not open); "
                "was its writing or copying interrupted?")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c in "\t\r\n" for c in text[:200]):
        first = " ".join(text.strip().split()[:8])
        first = first if len(first) <= 60 else first[:60].rsplit(" ", 1)[0] + " …"
        return f"{path} is a text file, not a checkpoint (it starts with {first!r})"
    return f"{path} is not a torch checkpoint ({size:,} bytes of unrecognised content)"


def model_class(config: dict[str, Any], source: str = "checkpoint") -> type[Seq2Seq]:
    """The model class named by {'class_path', ...}; only translator.models classes."""
    class_path = str(config.get("class_path", ""))
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name.startswith("translator.models"):
        raise ValueError(f"{source}: refusing to build model class {class_path!r} (not in translator.models)")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Seq2Seq)):
        raise ValueError(f"{source}: unknown model class {class_path!r}")
    return cls


def build_model(config: dict[str, Any], source: str = "checkpoint") -> Seq2Seq:
    """Instantiate a model from {'class_path', 'init_args'}; only translator.models classes."""
    return model_class(config, source)(**config.get("init_args", {}))


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild model + tokenizer from one checkpoint file; the model is in eval mode on `device`."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    bundle = checkpoint[BUNDLE_KEY]
    if bundle.get("tokenizer") is None:
        raise ValueError(f"{path} carries no tokenizer; it was not written by translator's trainer")
    tokenizer = Tokenizer.from_dict(bundle["tokenizer"])
    model = build_model(bundle["model"], source=str(path))
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model config "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    init = bundle["model"].get("init_args", {})
    if (init.get("src_vocab_size"), init.get("tgt_vocab_size")) != (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size):
        raise ValueError(f"{path}: model vocabulary sizes {init.get('src_vocab_size')}/{init.get('tgt_vocab_size')} "
                         f"do not match its tokenizer {tokenizer.src_vocab_size}/{tokenizer.tgt_vocab_size}")
    model.to(device).eval()
    data = dict(bundle.get("data") or {})
    if data.get("dataset") and not (data.get("src_lang") and data.get("tgt_lang")):
        try:  # older checkpoints stored the defaults (None): use the dataset's own pair
            data["src_lang"], data["tgt_lang"] = resolve_languages(data["dataset"], data.get("src_lang"),
                                                                   data.get("tgt_lang"))
        except (KeyError, ValueError):
            pass
    return Bundle(model=model, tokenizer=tokenizer, path=path, data=data,
                  hparams=dict(checkpoint.get("hyper_parameters") or {}), parent=bundle.get("parent"),
                  calibrator=bundle.get("calibrator"))


def average_checkpoints(paths: list[str | Path], output: str | Path) -> Path:
    """Average the weights of checkpoints of one run (same model config and tokenizer) into `output`.

    The result is an inference checkpoint: the mean of every floating-point weight, the bundle
    (model config, tokenizer, data options) of the last input, and no optimizer state. Averaging
    the last few epochs of a run usually scores a little higher than any one of them.
    """
    if not paths:
        raise ValueError("give at least one checkpoint to average")
    output = Path(output)
    first = last = read_checkpoint(paths[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["state_dict"].items()}
    for path in paths[1:]:
        last = read_checkpoint(path)
        for key, what in (("model", "model config"), ("tokenizer", "tokenizer")):
            if last[BUNDLE_KEY].get(key) != first[BUNDLE_KEY].get(key):
                raise ValueError(f"{path} has a different {what} than {paths[0]}; "
                                 "only checkpoints of the same run can be averaged")
        if last["state_dict"].keys() != total.keys():
            raise ValueError(f"{path} holds other weights than {paths[0]}")
        for key, value in last["state_dict"].items():
            if value.is_floating_point():
                total[key] += value.double()
    averaged = {k: (v / len(paths)).to(first["state_dict"][k].dtype) if v.is_floating_point() else v
                for k, v in total.items()}
    result = {"state_dict": averaged, "hyper_parameters": last.get("hyper_parameters", {}),
              BUNDLE_KEY: {**last[BUNDLE_KEY], "averaged_from": [str(p) for p in paths]}}
    for key in ("epoch", "global_step", "pytorch-lightning_version"):
        if key in last:
            result[key] = last[key]
    atomic_torch_save(result, output)
    return output


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save(obj, path) such that `path` is never seen half-written."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)

