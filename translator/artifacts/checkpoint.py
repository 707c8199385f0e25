"""Load a self-contained checkpoint (weights + model config + tokenizer) safely.

Loading uses `torch.load(weights_only=True)`: no arbitrary pickle runs, and the model class is
looked up only inside `translator.models`. A directory written by `translator export` (a
CTranslate2 model) is a checkpoint too: its metadata file is read here (`read_export`), its
weights by translator/engines/ct2.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import os
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from translator.atomic import atomic_open, check_input_file, check_output, file_sha256
from translator.data.registry import get_spec, resolve_languages
from translator.decoding import DecodeConfig
from translator.models.base import Seq2Seq
from translator.tasks import DEFAULT_CONTEXT_TURNS, TRANSLATION, Task, get_task
from translator.tokenizer import Tokenizer

BUNDLE_KEY = "translator"  # checkpoint["translator"] = {"model": config, "tokenizer": bytes, "data": {...}}
#: A chat checkpoint that carries its backward model (`translator attach`): the backward model's record under
#: checkpoint["translator"]["backward"] and its weights in the state dict under this prefix (loaders that predate
#: it read the "model." weights only, so the file still loads there as the chat model alone).
BACKWARD_PREFIX = "backward."
EXPORT_FILE = "translator_export.json"  # in an exported directory: model config, data, tokenizer files, source


@dataclasses.dataclass(frozen=True, eq=False)
class CheckpointMeta:
    """What a checkpoint (or exported directory) says about itself, read once, legacy defaults resolved.

    The one reader of checkpoint metadata (as litgpt's `Config.from_checkpoint`): inference, the
    service, evaluate, ensembles, export and resume build this record and ask it. Checkpoints of
    earlier versions get their missing fields here, and nowhere else: the task (from the dataset),
    the language pair (the dataset's default pair) and the chat context length (the dataset's
    rule with `DEFAULT_CONTEXT_TURNS`). A new checkpoint field is written by `make_bundle` and read here.
    """

    path: Path
    model: dict[str, Any]  # {"class_path", "init_args"} as recorded
    data: dict[str, Any]  # the DataModule options it was trained with, legacy defaults filled in
    hparams: dict[str, Any]  # the LightningModule's saved hyper-parameters ({} for an export)
    tokenizer_id: str | None = None  # sha256 of the tokenizer's model bytes (PyTorch checkpoints)
    export: dict[str, Any] | None = None  # an exported directory's metadata (quantization, ...), else None
    parent: dict[str, Any] | None = None  # the checkpoint it was fine-tuned from (translator/training/finetune.py `lineage`)
    calibrator: dict[str, Any] | None = None  # its confidence calibrator (translator/inference/confidence.py), if calibrated

    @classmethod
    def from_path(cls, path: str | Path) -> "CheckpointMeta":
        """The record of a checkpoint file or exported directory, without building its model (tensors stay
        on disk: mmap); FileNotFoundError / ValueError with one clear message when it is unreadable."""
        path = Path(path)
        if is_exported(path):
            return cls.from_export(path, read_export(path)[0])
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - legacy or broken files: the full reader gives the precise message
            checkpoint = None
        if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get(BUNDLE_KEY), dict)):
            checkpoint = read_checkpoint(path)
        return cls.from_checkpoint(path, checkpoint)

    @classmethod
    def from_checkpoint(cls, path: str | Path, checkpoint: dict[str, Any]) -> "CheckpointMeta":
        """The record of a checkpoint dict already loaded from `path` (`read_checkpoint`)."""
        bundle = checkpoint.get(BUNDLE_KEY) or {}
        return cls(Path(path), dict(bundle.get("model") or {}), resolve_data(bundle.get("data") or {}),
                   dict(checkpoint.get("hyper_parameters") or {}), tokenizer_id(bundle.get("tokenizer")),
                   parent=bundle.get("parent"), calibrator=bundle.get("calibrator"))

    @classmethod
    def from_export(cls, path: str | Path, meta: dict[str, Any]) -> "CheckpointMeta":
        """The record of an exported directory from its metadata file (`read_export`)."""
        return cls(Path(path), dict(meta["model"]), resolve_data(meta.get("data") or {}),
                   {"exported_from": meta.get("checkpoint", {}), "decoding": meta.get("decoding")}, None, dict(meta))

    @classmethod
    def from_options(cls, path: str | Path, model: dict[str, Any], data: dict[str, Any]) -> "CheckpointMeta":
        """The record of a model that was never saved (benchmarks, tests): a model config and data options."""
        return cls(Path(path), dict(model), resolve_data(data), {})

    def default_decoding(self, backward: bool = False) -> DecodeConfig:
        """The decoding used when none is given: the task's default for this checkpoint, with the decoding its
        recipe recorded (`Seq2SeqSystem(decoding=...)`) over it; `backward`: a backward model is loaded too."""
        return self.task.default_decoding(self.data, backward=backward, recipe=self.hparams.get("decoding"))

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
    def task(self) -> Task:
        return get_task(self.data["task"])

    @property
    def context_turns(self) -> int:
        """Turns the model sees, the message included (1 = the message alone; translation: 1)."""
        return self.task.context_turns(self.data)

    @property
    def reverse(self) -> bool:
        """Whether it was trained on its dataset's pairs reversed (target -> source): a chat backward model."""
        return bool(self.data.get("reverse"))

    @property
    def model_class(self) -> type[Seq2Seq]:
        """The PyTorch model class it names (only translator.models classes)."""
        return model_class(self.model, source=str(self.path))

    @property
    def init_args(self) -> dict[str, Any]:
        return dict(self.model.get("init_args") or {})

    @property
    def lineage(self) -> str:
        """`fine-tuned from PATH (sha256 …, data) ← ...`, or "" for a model trained from scratch."""
        return describe_lineage(self.parent)


def describe_lineage(parent: dict[str, Any] | None) -> str:
    """One line: `fine-tuned from PATH (sha256 abcd1234…, multi30k en→fr) ← GRANDPARENT ...`, or ""."""
    parts = []
    while parent:
        pair = f" {parent.get('src_lang')}→{parent.get('tgt_lang')}" if parent.get("src_lang") else ""
        parts.append(f"{parent.get('path')} (sha256 {str(parent.get('sha256'))[:12]}…, "
                     f"{parent.get('dataset') or 'unknown data'}{pair})")
        parent = parent.get("parent")
    return "fine-tuned from " + " ← ".join(parts) if parts else ""


def resolve_data(recorded: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's data options with what older versions did not record filled in (see CheckpointMeta)."""
    data = dict(recorded)
    spec = None
    try:
        spec = get_spec(str(data.get("dataset"))) if data.get("dataset") else None
    except ValueError:
        pass
    if not data.get("task"):
        data["task"] = spec.task if spec is not None else TRANSLATION.name
    if spec is not None and not (data.get("src_lang") and data.get("tgt_lang")):
        try:  # older checkpoints stored the defaults (None): use the dataset's own pair
            data["src_lang"], data["tgt_lang"] = resolve_languages(data["dataset"], data.get("src_lang"),
                                                                   data.get("tgt_lang"))
        except (KeyError, ValueError):
            pass
    if get_task(data["task"]).conversational and data.get("chat_context_turns") is None and spec is not None:
        data["chat_context_turns"] = spec.chat_context_turns(int(data.get("context_turns") or DEFAULT_CONTEXT_TURNS))
    return data


def tokenizer_id(tokenizer: Any) -> str | None:
    """A fingerprint of a bundle's tokenizer (`Tokenizer.to_dict`: model bytes), None when it has none."""
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("src"), bytes):
        return None
    digest = hashlib.sha256(tokenizer["src"])
    digest.update(b"\0" + (tokenizer.get("tgt") or b""))
    return digest.hexdigest()


@dataclasses.dataclass
class Bundle:
    """What a checkpoint holds: the model (eval mode), its tokenizer, and its metadata record."""

    model: Seq2Seq
    tokenizer: Tokenizer
    meta: CheckpointMeta
    backward: "Bundle | None" = None  # the backward model a chat checkpoint carries (`with_backward`), if any

    @property
    def path(self) -> Path:
        return self.meta.path

    @property
    def data(self) -> dict[str, Any]:
        return self.meta.data

    @property
    def hparams(self) -> dict[str, Any]:
        return self.meta.hparams

    @property
    def parent(self) -> dict[str, Any] | None:
        return self.meta.parent

    @property
    def calibrator(self) -> dict[str, Any] | None:
        return self.meta.calibrator

    @property
    def lineage(self) -> str:
        return self.meta.lineage

    @property
    def src_lang(self) -> str | None:
        return self.meta.src_lang

    @property
    def tgt_lang(self) -> str | None:
        return self.meta.tgt_lang

    @property
    def dataset(self) -> str | None:
        return self.meta.dataset

    @property
    def architecture(self) -> str:
        return getattr(self.model, "architecture", None) or type(self.model).__name__  # engines name themselves

    @property
    def task(self) -> Task:
        """The task it was trained for (translator.tasks): ask it, never compare its name."""
        return self.meta.task

    @property
    def chat_context_turns(self) -> int:
        """Turns the chatbot sends, the message included (1 = the message alone), as trained."""
        return self.meta.context_turns

    @property
    def reverse(self) -> bool:
        """Whether it was trained on its dataset's pairs reversed (target -> source): a chat backward model."""
        return self.meta.reverse

    @property
    def empty_source(self) -> list[int] | None:
        """The empty context (`<sep>` alone) when the model learned p(reply) through context dropout."""
        return self.task.empty_source(self.data, self.tokenizer)

    def default_decoding(self, backward: bool = False) -> DecodeConfig:
        """The decoding used when none is given (`CheckpointMeta.default_decoding`)."""
        return self.meta.default_decoding(backward)


def make_bundle(model_config: dict[str, Any], tokenizer: Tokenizer | None, data: dict[str, Any],
                parent: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bundle every checkpoint carries under BUNDLE_KEY (the one writer of its layout):
    plain data only, so the checkpoint loads with weights_only=True. `parent`: the lineage of a
    fine-tuned model (translator/training/finetune.py `lineage`)."""
    bundle = {"format": 1, "model": model_config, "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
              "data": data}
    if parent is not None:
        bundle["parent"] = parent
    return bundle


def save_calibrated(checkpoint: dict[str, Any], calibrator: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `checkpoint` (as `read_checkpoint` gave it) with its confidence calibrator (`Calibrator.to_dict`)
    to `path`, atomically."""
    checkpoint[BUNDLE_KEY]["calibrator"] = calibrator
    atomic_torch_save(checkpoint, path)


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


def export_meta(path: str | Path) -> tuple[CheckpointMeta, Tokenizer]:
    """The metadata record and the tokenizer of an exported directory (its weights: translator/engines/ct2.py)."""
    meta, tokenizer = read_export(path)
    return CheckpointMeta.from_export(path, meta), tokenizer


def checkpoint_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer a checkpoint (.ckpt) or exported directory carries, without building its model
    (a model trained from it, e.g. a chat backward model or a fine-tuning run, then shares its pieces)."""
    if is_exported(path):
        return read_export(path)[1]
    return read_tokenizer(read_checkpoint(path)[BUNDLE_KEY], path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load(weights_only=True) with one clear message for missing, corrupt or foreign files."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint path is a directory, not a file: {path} (an exported model "
                                f"directory has {EXPORT_FILE}; write one with `translator export CKPT --output DIR`)")
    check_input_file(path, "checkpoint")  # missing, a symlink loop, a FIFO (would block), a device
    try:
        with warnings.catch_warnings():  # torch warns about the legacy format of some foreign files
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files (KeyError, EOFError, RuntimeError...)
        raise ValueError(unreadable_reason(path, err)) from None
    if (not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(BUNDLE_KEY), dict)
            or not isinstance(checkpoint.get("state_dict"), dict)):
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
    """The model class named by {'class_path', ...}; only translator.models classes that implement the interface."""
    class_path = str(config.get("class_path", "")) if isinstance(config, dict) else ""
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name.startswith("translator.models"):
        raise ValueError(f"{source}: refusing to build model class {class_path!r} (not in translator.models)")
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError:
        cls = None
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Seq2Seq)):
        raise ValueError(f"{source}: unknown model class {class_path!r}")
    if any(getattr(cls, method) is getattr(Seq2Seq, method) for method in INTERFACE):
        raise ValueError(f"{source}: model class {class_path!r} is the model interface, not a model family; "
                         "the checkpoint is damaged or crafted")
    return cls


#: The methods every model implements (models/base.py); a class that inherits one of them unchanged is no model.
INTERFACE = ("encode", "init_state", "decode_step", "features")


def build_model(config: dict[str, Any], source: str = "checkpoint",
                weights: dict[str, torch.Tensor] | None = None) -> Seq2Seq:
    """Instantiate a model from {'class_path', 'init_args'}; only translator.models classes.

    With `weights` (a state dict), the shapes the configuration makes are checked against them first, on the
    meta device (no memory): a crafted d_model of 16384 is one message, not gigabytes allocated for nothing.
    """
    cls = model_class(config, source)
    init_args = config.get("init_args", {})
    if not isinstance(init_args, dict):
        raise ValueError(f"{source}: model init_args must be a mapping, got {type(init_args).__name__}")
    try:
        inspect.signature(cls).bind(**init_args)
    except TypeError as err:
        raise ValueError(f"{source}: model options do not fit {cls.__name__} ({err})") from None
    if weights is not None:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in _instantiate(cls, init_args, source).state_dict().items()}
        stored = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in weights.items()}
        missing, unexpected = sorted(shapes.keys() - stored.keys()), sorted(stored.keys() - shapes.keys())
        if missing or unexpected:
            raise ValueError(f"{source}: weights do not match the model config "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        wrong = [f"{k} {stored[k]} (config: {shapes[k]})" for k in sorted(shapes) if shapes[k] != stored[k]]
        if wrong:
            raise ValueError(f"{source}: the model config does not match its stored weights: "
                             f"{'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}")
    return _instantiate(cls, init_args, source)


def _instantiate(cls: type[Seq2Seq], init_args: dict[str, Any], source: str) -> Seq2Seq:
    try:
        return cls(**init_args)
    except (ValueError, TypeError, RuntimeError, AssertionError, KeyError) as err:  # a bad option value
        raise ValueError(f"{source}: cannot build {cls.__name__} from its options "
                         f"({type(err).__name__}: {str(err)[:160]})") from None


def read_tokenizer(bundle: dict[str, Any], path: str | Path) -> Tokenizer:
    """The tokenizer a checkpoint carries, with one message when it has none or it is damaged."""
    if bundle.get("tokenizer") is None:
        raise ValueError(f"{path} carries no tokenizer; it was not written by translator's trainer")
    try:
        return Tokenizer.from_dict(bundle["tokenizer"])
    except ValueError as err:
        raise ValueError(f"{path}: damaged tokenizer in the checkpoint: {err}") from None


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild model + tokenizer from one checkpoint file; the model is in eval mode on `device`."""
    return bundle_of(Path(path), read_checkpoint(path), device)


def bundle_of(path: Path, checkpoint: dict[str, Any], device: str | torch.device = "cpu") -> Bundle:
    """`load_bundle` of a checkpoint dict already read from `path` (`read_checkpoint`)."""
    bundle = checkpoint[BUNDLE_KEY]
    if not isinstance(bundle, dict) or not isinstance(bundle.get("model"), dict):
        raise ValueError(f"{path}: damaged checkpoint: its '{BUNDLE_KEY}' bundle has no model config")
    tokenizer = read_tokenizer(bundle, path)
    init = bundle["model"].get("init_args") or {}
    if (init.get("src_vocab_size"), init.get("tgt_vocab_size")) != (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size):
        raise ValueError(f"{path}: model vocabulary sizes {init.get('src_vocab_size')}/{init.get('tgt_vocab_size')} "
                         f"do not match its tokenizer {tokenizer.src_vocab_size}/{tokenizer.tgt_vocab_size}")
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model = build_model(bundle["model"], source=str(path), weights=state)
    model.load_state_dict(state)
    model.to(device).eval()
    return Bundle(model=model, tokenizer=tokenizer, meta=CheckpointMeta.from_checkpoint(path, checkpoint),
                  backward=_carried_backward(path, checkpoint, tokenizer, device))


def _carried_backward(path: Path, checkpoint: dict[str, Any], tokenizer: Tokenizer,
                      device: str | torch.device) -> Bundle | None:
    """The backward model a chat checkpoint carries (`with_backward`), built as `load_bundle` builds the chat
    model (shapes checked first); it reads the chat model's `tokenizer`. None when it carries none."""
    record = checkpoint[BUNDLE_KEY].get("backward")
    if record is None:
        return None
    source = f"{path} (its backward model)"
    if not isinstance(record, dict) or not isinstance(record.get("model"), dict):
        raise ValueError(f"{source}: damaged checkpoint: the backward model has no model config")
    prefix = BACKWARD_PREFIX + "model."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    model = build_model(record["model"], source=source, weights=state)
    model.load_state_dict(state)
    model.to(device).eval()
    own = {BUNDLE_KEY: {**record, "tokenizer": checkpoint[BUNDLE_KEY]["tokenizer"]},
           "hyper_parameters": record.get("hyper_parameters") or {}}
    return Bundle(model=model, tokenizer=tokenizer, meta=CheckpointMeta.from_checkpoint(path, own))


def with_backward(chat: dict[str, Any], backward: dict[str, Any], backward_path: str | Path) -> dict[str, Any]:
    """One inference checkpoint (no optimizer state) of a chat model that carries its backward model: the
    chat model's checkpoint as it is, plus the backward model's record (model config, data options,
    hyper-parameters, where it came from) under the bundle's "backward" and its weights under
    BACKWARD_PREFIX. The tokenizer is stored once: a backward model reads the chat model's
    (translator.inference.translator.check_backward, run by the caller before this)."""
    record = {key: backward[BUNDLE_KEY][key] for key in ("format", "model", "data") if key in backward[BUNDLE_KEY]}
    record["hyper_parameters"] = backward.get("hyper_parameters", {})
    record["source"] = {"path": str(backward_path), "sha256": file_sha256(backward_path)}
    state = {k: v for k, v in chat["state_dict"].items() if not k.startswith(BACKWARD_PREFIX)}
    state.update({BACKWARD_PREFIX + k: v for k, v in backward["state_dict"].items() if k.startswith("model.")})
    return inference_checkpoint(state, chat, {**chat[BUNDLE_KEY], "backward": record})


def inference_checkpoint(state: dict[str, torch.Tensor], run: dict[str, Any], bundle: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint to decode with, no optimizer state: `state`, `bundle`, and the hyper-parameters and run facts
    (epoch, step, Lightning version) of the training checkpoint `run` it was made from."""
    result = {"state_dict": state, "hyper_parameters": run.get("hyper_parameters", {}), BUNDLE_KEY: bundle}
    for key in ("epoch", "global_step", "pytorch-lightning_version"):
        if key in run:
            result[key] = run[key]
    return result


def average_checkpoints(paths: list[str | Path], output: str | Path) -> Path:
    """Average the weights of checkpoints of one run (same model config and tokenizer) into `output`.

    The result is an inference checkpoint: the mean of every floating-point weight, the bundle
    (model config, tokenizer, data options) of the last input, and no optimizer state. Averaging
    the last few epochs of a run usually scores a little higher than any one of them.
    """
    if not paths:
        raise ValueError("give at least one checkpoint to average")
    output = Path(output)
    check_output(output, {"checkpoint": paths})
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
    bundle = {**last[BUNDLE_KEY], "averaged_from": [str(p) for p in paths]}
    atomic_torch_save(inference_checkpoint(averaged, last, bundle), output)
    return output


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save(obj, path) such that `path` is never seen half-written."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)

