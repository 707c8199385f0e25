"""Golden outputs: every CLI command (and the app's service calls) on tiny checkpoints, recorded so that two
source trees can be compared: the same checkpoint files and options must give the same outputs.

    python benchmarks/golden.py build DIR                   # tiny corpora + one checkpoint per family (this tree)
    python benchmarks/golden.py record DIR OUT.json [--root TREE]   # run every command with TREE's code
    python benchmarks/golden.py compare A.json B.json       # exit 1 and list the commands whose output differs

`build` trains the checkpoints once (fixed seeds, tests/helpers.py's tiny models); `record` runs each command
as a user would (`python -m translator ...` in a fresh process, PYTHONPATH=TREE, one thread) in a scratch folder
and keeps its exit code, stdout, stderr and the files it wrote (text as text, JSON without the timing fields,
checkpoints as a digest of their tensors and metadata, other files as a SHA-256). The checkpoints are built by
one tree and read by both, so a refactor is also checked against checkpoints an earlier version wrote.
Paths are written as <DIR> / <ROOT>; wall-clock figures (seconds, sentences per second) are masked.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
TEXTS = ["ein mann a dog runs", "two kids play in park", "the woman with green hat", "red ball on street"]
#: JSON keys that hold wall-clock figures (masked: they differ between any two runs)
TIMING_KEYS = re.compile(r"(seconds|per_second|per_sec|elapsed|duration|time|speed|_s$)", re.I)
TIMING_TEXT = re.compile(r"\d+(\.\d+)?\s*(s\b|ms\b|sent/s|sentences/s|tok/s|tokens/s|it/s|s/it)")

# ---- build ---------------------------------------------------------------------------------------
CHECKPOINTS = {
    "transformer": {"kind": "transformer"},
    "attention": {"kind": "attention"},
    "lstm": {"kind": "lstm"},
    "chat": {"kind": "transformer", "dataset": "dailydialog", "src_lang": "en", "tgt_lang": "en",
             "context_turns": 2, "context_dropout": 0.1},
    "chat_bwd": {"kind": "transformer", "dataset": "dailydialog", "src_lang": "en", "tgt_lang": "en",
                 "context_turns": 2, "reverse": True},  # the chat model's tokenizer (same seed)
    "chat_ko": {"kind": "lstm", "dataset": "chatbot-ko", "src_lang": "ko", "tgt_lang": "ko", "task": "chat",
                "chat_context_turns": 1, "context_dropout": 0.1},
}


def build(folder: Path, root: Path) -> None:
    sys.path[:0] = [str(root), str(root / "tests")]
    from helpers import make_tiny_checkpoint, write_chatbot_ko_like, write_dailydialog_like, write_multi30k_like

    data = folder / "data"
    write_multi30k_like(data, n_train=60, n_val=12, n_test=12, transform=str)  # the tiny models copy
    write_chatbot_ko_like(data)
    write_dailydialog_like(data)
    for name, options in CHECKPOINTS.items():
        make_tiny_checkpoint(folder / f"{name}.ckpt", steps=150, **{"seed": 1, **options})
    (folder / "in.de").write_text("\n".join(TEXTS) + "\n\n" + TEXTS[0] + "\n", encoding="utf-8")
    (folder / "messages.txt").write_text("a man runs\nthe dog <sep> two kids play\n", encoding="utf-8")


# ---- the commands ----------------------------------------------------------------------------------
def commands(has_ct2: bool) -> list[tuple[str, list[str], str]]:
    """(name, arguments after `translator`, stdin) of every recorded command."""
    t, a, l, c, k = "transformer.ckpt", "attention.ckpt", "lstm.ckpt", "chat.ckpt", "chat_ko.ckpt"
    runs: list[tuple[str, list[str], str]] = [("help", ["--help"], "")]
    for command in ("fit", "translate", "evaluate", "average", "calibrate", "export", "app", "lab params",
                    "lab softmax", "lab beam", "data list", "data stats"):
        runs.append((f"help {command}", [*command.split(), "--help"], ""))
    for family in ("transformer", "attention", "lstm"):
        ckpt = f"{family}.ckpt"
        runs += [
            (f"translate greedy {family}", ["translate", "--checkpoint", ckpt, "--input", "in.de",
                                            "--decode.method", "greedy"], ""),
            (f"translate beam {family}", ["translate", "--checkpoint", ckpt, "--input", "in.de",
                                          "--decode.beam_size", "4"], ""),
            (f"translate nbest {family}", ["translate", "--checkpoint", ckpt, "--input", "in.de", "--decode.beam_size",
                                           "4", "--decode.nbest", "3"], ""),
            (f"translate sample {family}", ["translate", "--checkpoint", ckpt, "--input", "in.de", "--decode.method",
                                            "sample", "--decode.seed", "3", "--decode.nbest", "2"], ""),
            (f"translate stdin {family}", ["translate", "--checkpoint", ckpt], "\n".join(TEXTS) + "\n"),
            (f"evaluate {family}", ["evaluate", "--checkpoint", ckpt, "--dataset", "multi30k", "--json",
                                    f"eval-{family}.json", "--plot", f"eval-{family}.png"], ""),
            (f"lab attention {family}", ["lab", "attention", ckpt, "--text", TEXTS[1], "--output",
                                         f"att-{family}.png"], ""),
            (f"lab softmax {family}", ["lab", "softmax", ckpt, "--text", TEXTS[0], "--prefix", "a",
                                       "--output", f"softmax-{family}.png"], ""),
            (f"lab beam {family}", ["lab", "beam", ckpt, "--text", TEXTS[0], "--beam_size", "3",
                                    "--output", f"beam-{family}.png"], ""),
            (f"lab params {family}", ["lab", "params", "--source", ckpt, "--output", f"params-{family}.png"], ""),
        ]
    runs += [
        ("translate bf16", ["translate", "--checkpoint", t, "--input", "in.de", "--precision", "bf16"], ""),
        ("translate int8", ["translate", "--checkpoint", l, "--input", "in.de", "--precision", "int8"], ""),
        ("translate ensemble", ["translate", "--ensemble", t, a, l, "--input", "in.de", "--decode.beam_size", "3"], ""),
        ("translate chat", ["translate", "--checkpoint", c, "--input", "messages.txt"], ""),
        ("translate chat greedy", ["translate", "--checkpoint", c, "--input", "messages.txt", "--decode.method",
                                   "greedy", "--decode.lm_weight", "0.3"], ""),
        ("translate chat_ko beam", ["translate", "--checkpoint", k, "--input", "messages.txt", "--decode.method",
                                    "beam", "--decode.beam_size", "3", "--decode.nbest", "2"], ""),
        ("translate bidi", ["translate", "--checkpoint", c, "--backward", "chat_bwd.ckpt", "--input", "messages.txt"], ""),
        ("translate bidi forward as backward", ["translate", "--checkpoint", c, "--backward", c, "--input",
                                                "messages.txt"], ""),
        ("translate missing", ["translate", "--checkpoint", "missing.ckpt", "--input", "in.de"], ""),
        ("translate output onto input", ["translate", "--checkpoint", t, "--input", "in.de", "--output", "in.de"], ""),
        ("evaluate several", ["evaluate", "--checkpoint", t, a, "--dataset", "multi30k", "--split", "val",
                              "--decode.method", "greedy", "--json", "eval-two.json"], ""),
        ("evaluate files", ["evaluate", "--checkpoint", l, "--source", "in.de", "--reference", "in.de", "--json",
                            "eval-files.json", "--hypotheses", "hyp.txt"], ""),
        ("evaluate ensemble", ["evaluate", "--ensemble", t, l, "--dataset", "multi30k", "--json", "eval-ens.json"], ""),
        ("evaluate chat", ["evaluate", "--checkpoint", c, "--dataset", "dailydialog", "--split", "val",
                           "--json", "eval-chat.json", "--hits_k", "5"], ""),
        ("evaluate chat_ko", ["evaluate", "--checkpoint", k, "--dataset", "chatbot-ko", "--split", "val",
                              "--json", "eval-chat-ko.json"], ""),
        ("average", ["average", t, t, "--output", "avg.ckpt"], ""),
        ("translate average", ["translate", "--checkpoint", "avg.ckpt", "--input", "in.de"], ""),
        ("calibrate", ["calibrate", t, "--output", "cal.ckpt", "--chrf_threshold", "median", "--plot", "rel.png"], ""),
        ("translate calibrated", ["translate", "--checkpoint", "cal.ckpt", "--input", "in.de", "--scores", "true"], ""),
        ("evaluate confidence", ["evaluate", "--checkpoint", "cal.ckpt", "--dataset", "multi30k", "--confidence",
                                 "true", "--json", "eval-conf.json"], ""),
        ("lab gates", ["lab", "gates", l, "--text", TEXTS[0], "--output", "gates.png"], ""),
        ("lab positions", ["lab", "positions", "--source", t, "--length", "20", "--output", "positions.png"], ""),
        ("lab bottleneck", ["lab", "bottleneck", "--checkpoint", f"t={t}", "--checkpoint", f"l={l}", "--per_length",
                            "3", "--output", "bottleneck.png"], ""),
        ("lab gradients", ["lab", "gradients", "--steps", "3", "--hidden_size", "16", "--vocab_size", "400",
                           "--length", "8", "--output", "gradients.png"], ""),
        ("lab exposure", ["lab", "exposure", "--steps", "4", "--every", "2", "--sentences", "8", "--vocab_size", "400",
                          "--output", "exposure.png"], ""),
        ("data list", ["data", "list"], ""),
        ("data stats", ["data", "stats", "multi30k", "--vocab_size", "400", "--cache_dir", "cache"], ""),
        ("fit print_config", ["fit", "--config", "<ROOT>/translator/configs/transformer.yaml", "--print_config"], ""),
        ("fit", ["fit", "--config", "<ROOT>/translator/configs/transformer.yaml", "--trainer.max_steps", "3",
                 "--trainer.max_epochs", "1", "--trainer.precision", "32-true", "--trainer.logger", "false",
                 "--trainer.default_root_dir", "fit", "--trainer.enable_progress_bar", "false",
                 "--trainer.limit_val_batches", "1", "--data.vocab_size", "400", "--data.cache_dir", "cache",
                 "--model.model.init_args.d_model", "16", "--model.model.init_args.ff_size", "32",
                 "--model.model.init_args.num_heads", "2", "--model.val_bleu", "false", "--trainer.callbacks",
                 "[]", "--trainer.enable_checkpointing", "false"], ""),
    ]
    if has_ct2:
        runs += [
            ("export", ["export", t, "--output", "exported", "--quantization", "float32"], ""),
            ("translate exported", ["translate", "--checkpoint", "exported", "--input", "in.de",
                                    "--decode.beam_size", "3"], ""),
            ("evaluate exported", ["evaluate", "--checkpoint", "exported", "--dataset", "multi30k",
                                   "--json", "eval-ct2.json"], ""),
        ]
    return runs


SERVICE = r"""
import json, sys
from pathlib import Path
try:
    from translator.serve.app import TranslatorApp
    from translator.serve.learn import LearnService
    from translator.serve.service import ModelRegistry
except ImportError:  # a tree from before the layout of layers
    from translator.app import LearnService, ModelRegistry, TranslatorApp
d = Path(sys.argv[1])
registry = ModelRegistry([d / "transformer.ckpt", d / "attention.ckpt", d / "lstm.ckpt"], chat_checkpoint=d / "chat.ckpt")
app = TranslatorApp(registry, max_input_chars=2000)
out = {"labels": registry.labels, "choices": registry.choices}
for label in registry.labels:
    for decoder in ("greedy", "beam"):
        out[f"api_translate {label} {decoder}"] = app.api_translate("ein mann a dog runs\ntwo kids play", label, decoder, 3)
    r = app.translate_text("two kids play in park", label, "greedy", 3)
    out[f"translate_text {label}"] = [r.text, r.info, r.error, r.figure is not None]
    out[f"describe {label}"] = app.describe_checkpoint(label)
out["api_translate empty"] = app.translate_text("", "", "greedy", 3).error
out["api_chat greedy"] = app.api_chat("a man runs", ["the dog", "two kids play"], "greedy")
out["api_chat default"] = app.api_chat("a man runs", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the dog"}])
out["api_chat beam"] = app.api_chat("a man runs", None, "beam", beam_size=3, lm_weight=0.2)
turn = app.chat_turn("red ball", ["a man"], method="sample", temperature=0.9, candidates=3)
out["chat_turn"] = [turn.reply, [[str(c.text), round(float(c.total), 5)] for c in turn.candidates]]
out["chat_settings"] = repr(app.chat_settings())
learn = LearnService(registry, lab_dir=d / "labdir")
for key in ("softmax", "beam", "attention", "params"):
    try:
        res = learn.show(key, registry.labels[0], "two kids play", "a")
        out[f"learn {key}"] = [res.table, res.note]
    except Exception as err:
        out[f"learn {key}"] = f"{type(err).__name__}: {err}"
print(json.dumps(out, default=repr, ensure_ascii=False, indent=1))
"""


# ---- recording -------------------------------------------------------------------------------------
def _mask(text: str, folder: Path, root: Path) -> str:
    text = text.replace(str(folder.resolve()), "<DIR>").replace(str(root.resolve()), "<ROOT>")
    return TIMING_TEXT.sub("<T>", text)


def _clean_json(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: "<T>" if TIMING_KEYS.search(k) else _clean_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_clean_json(v) for v in data]
    if isinstance(data, str):
        return re.sub(r"/\S*/golden-work/", "<WORK>/", data)
    return data


def _digest_checkpoint(path: Path) -> str:
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    digest = hashlib.sha256()

    def feed(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k in sorted(value, key=str):
                if TIMING_KEYS.search(str(k)) or str(k) in ("created", "date"):
                    continue
                feed(value[k], f"{key}/{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                feed(v, f"{key}/{i}")
        elif isinstance(value, torch.Tensor):
            digest.update(key.encode() + value.contiguous().view(torch.uint8).numpy().tobytes()
                          if value.numel() else key.encode())
        else:
            digest.update(f"{key}={value!r}".encode())

    feed(data)
    return digest.hexdigest()[:16]


def _describe(path: Path, work: Path, root: Path) -> Any:
    if path.suffix == ".ckpt":
        return {"checkpoint": _digest_checkpoint(path)}
    raw = path.read_bytes()
    if path.suffix == ".json":
        return _clean_json(json.loads(raw))
    if path.suffix in (".txt", ".en", ".de", ".yaml", ".csv", ".log"):
        return _mask(raw.decode("utf-8", "replace"), work, root)
    return {"sha256": hashlib.sha256(raw).hexdigest()[:16], "bytes": len(raw)}


def _files(work: Path) -> dict[str, float]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}


def record(folder: Path, out: Path, root: Path, only: set[str] | None = None) -> None:
    folder, root = folder.resolve(), root.resolve()
    work = folder / "golden-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    for name in [*(f"{n}.ckpt" for n in CHECKPOINTS), "in.de", "messages.txt"]:
        shutil.copy(folder / name, work / name)
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(root), "TRANSLATOR_DATA_DIR": str(folder / "data"), "OMP_NUM_THREADS": "1",
           "COLUMNS": "100", "PYTHONHASHSEED": "0", "TRANSLATOR_DEBUG": ""}
    has_ct2 = subprocess.run([python, "-c", "import ctranslate2"], capture_output=True).returncode == 0
    results: dict[str, Any] = {}
    for name, args, stdin in commands(has_ct2):
        if only and name not in only:
            continue
        args = [a.replace("<ROOT>", str(root)) for a in args]
        before = _files(work)
        proc = subprocess.run([python, "-m", "translator", *args], cwd=work, env=env, input=stdin, text=True,
                              capture_output=True)
        after = _files(work)
        changed = sorted(p for p, t in after.items() if before.get(p) != t and "lightning_logs" not in p
                         and "cache/" not in p)
        results[name] = {"argv": [_mask(a, work, root) for a in args], "rc": proc.returncode,
                         "stdout": _mask(proc.stdout, work, root),
                         "stderr": _mask(proc.stderr, work, root).splitlines()[-15:],
                         "files": {p: _describe(work / p, work, root) for p in changed if not p.endswith(".bin")
                                   or "exported" not in p}}
        print(f"{name}: rc {proc.returncode}", file=sys.stderr)
    if only and "service" not in only:
        out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    proc = subprocess.run([python, "-c", SERVICE, str(work)], cwd=work, env=env, text=True, capture_output=True)
    results["service"] = {"rc": proc.returncode, "stdout": _mask(proc.stdout, work, root),
                          "stderr": _mask(proc.stderr, work, root).splitlines()[-15:]}
    print(f"service: rc {proc.returncode}", file=sys.stderr)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


#: Table columns of `evaluate` that hold wall-clock figures (masked by `_mask_tables`).
TIMING_COLUMNS = {"sent/s", "tok/s", "seconds_per_reply"}


def _mask_tables(text: str) -> str:
    """`evaluate`'s tables with their timing columns masked: cells are separated by two or more spaces (a
    decoding cell has single spaces only); a masked column's width changes nothing."""
    out, masked = [], None
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip()) if line.strip() else []
        if TIMING_COLUMNS & set(cells):
            masked = {i for i, c in enumerate(cells) if c in TIMING_COLUMNS}
        elif not cells:
            masked = None
        if masked is not None and cells and not set(line.strip()) <= {"-", " "}:
            cells = ["<T>" if i in masked and cells[i] not in TIMING_COLUMNS else c for i, c in enumerate(cells)]
            out.append("  ".join(cells))
        elif masked is None:
            out.append(line)
    return "\n".join(out)


def _normalized(results: dict[str, Any]) -> dict[str, Any]:
    return {name: {**r, "stdout": _mask_tables(r.get("stdout", ""))} for name, r in results.items()}


def compare(a: Path, b: Path) -> int:
    old, new = json.loads(a.read_text(encoding="utf-8")), json.loads(b.read_text(encoding="utf-8"))
    old, new = _normalized(old), _normalized(new)
    differ = [name for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    for name in differ:
        print(f"differs: {name}")
        x, y = old.get(name) or {}, new.get(name) or {}
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                print(f"  {key}:\n    before: {json.dumps(x.get(key), ensure_ascii=False)[:600]}\n"
                      f"    after:  {json.dumps(y.get(key), ensure_ascii=False)[:600]}")
    print(f"{len(old)} commands recorded; {len(differ)} differ")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    bld = sub.add_parser("build")
    bld.add_argument("folder", type=Path)
    bld.add_argument("--root", type=Path, default=HERE, help="the tree whose tests/helpers.py builds them")
    rec = sub.add_parser("record")
    rec.add_argument("folder", type=Path)
    rec.add_argument("out", type=Path)
    rec.add_argument("--root", type=Path, default=HERE)
    rec.add_argument("--only", default=None, help="comma-separated command names (and 'service') to record alone")
    cmp = sub.add_parser("compare")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.step == "build":
        args.folder.mkdir(parents=True, exist_ok=True)
        build(args.folder, args.root)
        return 0
    if args.step == "record":
        record(args.folder, args.out, args.root, set(args.only.split(",")) if args.only else None)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    raise SystemExit(main())
