"""Export a Transformer checkpoint to a CTranslate2 model directory, and read such a directory back.

An exported directory is a checkpoint for `translate`, `evaluate` and `app` (translator/engines/ct2.py
decodes it). It holds what `ctranslate2.specs` writes (`model.bin`, `config.json`, the vocabularies)
plus our own files, the one place that knows their layout:

    translator_export.json   model config, data options (dataset, language pair, ...), tokenizer file
                             names, source checkpoint path + sha256, quantization, ctranslate2 version
    source.spm[, target.spm] the SentencePiece model(s), the same bytes the checkpoint carries

The spec is built from our weights directly (no converter): pre-norm layers, final layer norms, our
activation, our position table (sinusoidal or learned) passed as `position_encodings`, embeddings
scaled by sqrt(D), fused qkv / kv projections in our order (q, k, v), tied embeddings as the same
array (CTranslate2 aliases equal variables when it optimizes), and our vocabulary with our special
tokens. CTranslate2 has no RNN decoder, so only Transformer checkpoints export.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from translator.artifacts.checkpoint import EXPORT_FILE, is_exported, load_bundle
from translator.atomic import check_output_dir, file_sha256
from translator.models.transformer import Transformer, sinusoids
from translator.tokenizer import Tokenizer

QUANTIZATIONS = ("float32", "int8", "int8_float32", "bfloat16")
INSTALL_HINT = ("CTranslate2 is not installed; install the fast-inference extra with "
                "`pip install 'translator[fast]'` (or `pip install ctranslate2`)")
#: CTranslate2's layer-norm epsilon must be ours (torch's default): its own default is 1e-6.
LAYER_NORM_EPS = 1e-5


class MissingDependencyError(ValueError):
    """An optional dependency is not installed (a user error: the message says how to install it)."""


def require_ctranslate2() -> Any:
    """The ctranslate2 module, or one MissingDependencyError that says how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return ctranslate2


def _np(t: torch.Tensor) -> Any:
    return t.detach().float().cpu().contiguous().numpy()


def _linear(spec: Any, layer: torch.nn.Linear) -> None:
    spec.weight = _np(layer.weight)  # (out, in), as torch stores it
    if layer.bias is not None:
        spec.bias = _np(layer.bias)


def _norm(spec: Any, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _np(norm.weight), _np(norm.bias)


def build_spec(model: Transformer, tokenizer: Tokenizer) -> Any:
    """A validated `ctranslate2.specs.TransformerSpec` holding `model`'s weights and `tokenizer`'s vocabularies."""
    require_ctranslate2()
    from ctranslate2.specs import common_spec, transformer_spec

    init = model.config()["init_args"]
    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}[init["activation"]]
    heads = init["num_heads"]
    # alignment_heads = all heads of the last layer: the heatmap is their average, as in the PyTorch path
    spec = transformer_spec.TransformerSpec.from_config(
        (len(model.encoder_layers), len(model.decoder_layers)), heads, pre_norm=True, activation=activation,
        alignment_layer=-1, alignment_heads=heads)
    if model.positions == "learned":
        table = model.pos_emb.weight  # (max_len, D)
    else:
        table = sinusoids(model.max_src_len, model.d_model)  # (max_len, D): ours interleaves sin/cos, CT2's would not
    emb_src, emb_tgt = _np(model.src_emb.weight), _np(model.tgt_emb.weight)
    enc, dec = spec.encoder, spec.decoder
    enc.embeddings[0].weight = emb_src
    dec.embeddings.weight = emb_src if model.tgt_emb is model.src_emb else emb_tgt
    for side in (enc, dec):
        side.scale_embeddings = True  # emb * sqrt(D) + position
        side.position_encodings.encodings = _np(table)
    _norm(enc.layer_norm, model.encoder_norm)
    _norm(dec.layer_norm, model.decoder_norm)
    for layer_spec, layer in zip(enc.layer, model.encoder_layers):
        _norm(layer_spec.self_attention.layer_norm, layer.norm1)
        _linear(layer_spec.self_attention.linear[0], layer.attn.qkv)  # fused (q, k, v), (3D, D)
        _linear(layer_spec.self_attention.linear[1], layer.attn.out)
        _ffn(layer_spec.ffn, layer.norm2, layer.ff)
    for layer_spec, layer in zip(dec.layer, model.decoder_layers):
        _norm(layer_spec.self_attention.layer_norm, layer.norm1)
        _linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv)
        _linear(layer_spec.self_attention.linear[1], layer.self_attn.out)
        _norm(layer_spec.attention.layer_norm, layer.norm2)
        _linear(layer_spec.attention.linear[0], layer.cross_attn.q)
        _linear(layer_spec.attention.linear[1], layer.cross_attn.kv)  # fused (k, v), (2D, D)
        _linear(layer_spec.attention.linear[2], layer.cross_attn.out)
        _ffn(layer_spec.ffn, layer.norm3, layer.ff)
    tied = model.out.weight is model.tgt_emb.weight
    dec.projection.weight = dec.embeddings.weight if tied else _np(model.out.weight)  # no bias
    spec.config.unk_token = tokenizer.tgt.id_to_piece(tokenizer.unk_id)
    spec.config.bos_token = spec.config.decoder_start_token = tokenizer.tgt.id_to_piece(tokenizer.bos_id)
    spec.config.eos_token = tokenizer.tgt.id_to_piece(tokenizer.eos_id)
    spec.config.layer_norm_epsilon = LAYER_NORM_EPS
    spec.register_source_vocabulary(pieces(tokenizer.src))
    spec.register_target_vocabulary(pieces(tokenizer.tgt))
    spec.validate()
    return spec


def _ffn(spec: Any, norm: torch.nn.LayerNorm, ff: torch.nn.Sequential) -> None:
    _norm(spec.layer_norm, norm)
    _linear(spec.linear_0, ff[0])
    _linear(spec.linear_1, ff[3])


def pieces(sp: Any) -> list[str]:
    """Every piece of a SentencePiece model, by id: the engine's vocabulary."""
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def export_checkpoint(checkpoint: str | Path, output: str | Path, quantization: str = "int8",
                      force: bool = False) -> Path:
    """Write a CTranslate2 model directory for a Transformer checkpoint (see the module docstring).

    quantization: the weights' type on disk and the default compute type (int8 / int8_float32 /
    bfloat16 / float32). `output` must be new or empty, or an earlier export that `force` replaces (its
    EXPORT_FILE marks it); a directory holding the checkpoint is never replaced. Returns `output`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    ct2 = require_ctranslate2()
    checkpoint, output = Path(checkpoint), Path(output)
    check_output_dir(output, {"checkpoint": checkpoint})
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; give a directory name")
    if output.exists() and any(output.iterdir()):
        if not is_exported(output):  # --force replaces an earlier export, never a folder of other files
            raise ValueError(f"output {output} is a non-empty directory that is not an earlier export (no "
                             f"{EXPORT_FILE}); give a new or empty directory (--force only replaces an export)")
        if not force:
            raise ValueError(f"output {output} holds an earlier export; pass --force true to replace it")
    bundle = load_bundle(checkpoint)
    if not isinstance(bundle.model, Transformer):
        raise ValueError(f"{checkpoint} is a {bundle.architecture} checkpoint; only Transformer checkpoints export "
                         "to CTranslate2 (it has no RNN decoder). Decode RNN models in PyTorch, e.g. "
                         "`translator translate --checkpoint CKPT --precision int8`")
    spec = build_spec(bundle.model, bundle.tokenizer)
    spec.optimize(quantization=quantization)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}-"))
    try:
        spec.save(str(tmp))
        tok_files = _write_tokenizer(bundle.tokenizer, tmp)
        meta = {"format": 1, "engine": "ctranslate2", "ctranslate2_version": ct2.__version__,
                "quantization": quantization, "model": bundle.model.config(), "data": bundle.data,
                "decoding": bundle.hparams.get("decoding"),
                "tokenizer": tok_files, "checkpoint": {"path": str(checkpoint.resolve()),
                                                       "sha256": file_sha256(checkpoint)}}
        (tmp / EXPORT_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        old = output.rename(output.parent / f"{tmp.name}.old") if output.exists() else None  # checked above
        tmp.rename(output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output


def _write_tokenizer(tokenizer: Tokenizer, folder: Path) -> dict[str, str | None]:
    data = tokenizer.to_dict()
    (folder / "source.spm").write_bytes(data["src"])
    if data.get("tgt") is not None:
        (folder / "target.spm").write_bytes(data["tgt"])
    return {"src": "source.spm", "tgt": "target.spm" if data.get("tgt") is not None else None}


def export_command(checkpoint: str, *, output: str, quantization: str = "int8", force: bool = False) -> Path:
    """Export a Transformer checkpoint to a CTranslate2 model directory (faster CPU/GPU decoding, int8).

    The directory is a checkpoint for `translate`, `evaluate` and `app` (--checkpoint DIR), which then
    decode with CTranslate2: same options, same output format. Needs the extra: pip install 'translator[fast]'.

    Examples:
        translator export checkpoints/transformer-multi30k-de-en/version_0/checkpoints/best.ckpt --output exported/de-en-int8
        translator export best.ckpt --output exported/de-en-fp32 --quantization float32
        translator translate --checkpoint exported/de-en-int8 --input in.de --decode.method greedy

    Args:
        checkpoint: a Transformer .ckpt written by `translator fit` (RNN models have no CTranslate2 decoder).
        output: directory to write: new or empty, or an earlier export (with --force); never the folder of the
            checkpoint.
        quantization: weights on disk and default compute type: int8, int8_float32, bfloat16 or float32.
        force: replace an earlier export in --output (--force true); a folder of other files is never replaced.
    """
    path = export_checkpoint(checkpoint, output, quantization, force=force)
    print(f"exported {checkpoint} ({quantization}) -> {path}")
    return path


__all__ = ["EXPORT_FILE", "MissingDependencyError", "export_command", "QUANTIZATIONS", "build_spec", "export_checkpoint", "is_exported", "require_ctranslate2"]
