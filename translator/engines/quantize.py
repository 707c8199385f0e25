"""Dynamic int8 quantization for decoding (`--precision int8`), through torch's own API.

`torch.ao.quantization.quantize_dynamic` stores the weights of every Linear, LSTM/GRU and
LSTMCell/GRUCell as int8 and quantizes their inputs on the fly (per batch), so decoding needs no
calibration data; embeddings, layer norms and attention products stay float32. The model is copied:
the checkpoint's float model is left as it was. CPU only (fbgemm / x86 kernels).
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

QUANTIZED_LAYERS = {nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell}


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 dynamically quantized copy of `model` (eval mode); the four-method interface is unchanged."""
    model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():  # torch 2.13 points eager quantization users to torchao; the API still works
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(model, QUANTIZED_LAYERS, dtype=torch.qint8)
