"""CPU fast paths (translator.cpu_fastpaths): each keeps the behaviour of the library call it replaces."""
from __future__ import annotations

import ctypes
import sys

import pytest
import torch
import torch.nn.functional as F

from translator import cpu_fastpaths
from translator.cpu_fastpaths import LEVELS, CompiledOnCPU, Dropout, dropout, scaled_dot_product_attention


# ---- dropout with byte masks ---------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_byte_dropout_rate_scale_and_gradient(p):
    torch.manual_seed(0)
    x = torch.rand(200_000, dtype=torch.float64) + 1.0  # strictly positive, so zeros are drops
    x.requires_grad_(True)
    y = dropout(x, p, training=True)
    dropped = (y == 0).double().mean().item()
    p_used = round(p * LEVELS) / LEVELS
    assert abs(dropped - p_used) < 0.005  # 200k draws: the standard error is ~0.001
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - p_used))  # unbiased: kept values are rescaled
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y / x).detach())  # the gradient is the same mask and scale


def test_byte_dropout_is_identity_in_eval_reproducible_and_keeps_dtype():
    layer = Dropout(0.2)
    x = torch.randn(64, 32).bfloat16()
    assert layer.eval()(x) is x
    layer.train()
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    b = layer(x)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)
    assert not torch.equal(a, layer(x))  # a fresh mask each call
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_byte_dropout_keeps_one_byte_per_element_for_backward():
    """What autograd holds for the backward of dropout is a boolean mask, not a float copy of the input's size."""
    saved = []
    x = torch.randn(64, 256, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = dropout(x, 0.3, training=True)
    assert [(t.dtype, tuple(t.shape)) for t in saved] == [(torch.bool, (64, 256))]
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, saved[0].float() / (1 - round(0.3 * LEVELS) / LEVELS))


# ---- attention, and the one switch ---------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_training_attention_equals_sdpa_with_gradients(causal):
    """The explicit CPU-training attention gives SDPA's output and gradients (boolean mask, True = attend)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 4, dtype=torch.float64) for _ in range(3))  # (B, H, T, Dh), S = T
    mask = None if causal else (torch.arange(7)[None] < torch.tensor([7, 4, 1])[:, None])[:, None, None, :]
    ours = [x.clone().requires_grad_(True) for x in (q, k, v)]
    theirs = [x.clone().requires_grad_(True) for x in (q, k, v)]
    y = scaled_dot_product_attention(*ours, attn_mask=mask, is_causal=causal)  # (B, H, T, Dh)
    expected = F.scaled_dot_product_attention(*theirs, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(y, expected)
    (y * expected.detach()).sum().backward()
    (expected * expected.detach()).sum().backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)


def test_switched_off_every_path_is_the_library_call(monkeypatch):
    monkeypatch.setattr(cpu_fastpaths, "ENABLED", False)
    x = torch.randn(64, 32)
    torch.manual_seed(3)
    ours = Dropout(0.1).train()(x)
    torch.manual_seed(3)
    assert torch.equal(ours, F.dropout(x, 0.1, True))  # p not rounded: the library's own masks
    square = CompiledOnCPU(torch.square)
    assert torch.equal(square(x), x * x) and square.compiled is None  # never compiled
    assert not cpu_fastpaths.tune_malloc()


def test_tune_malloc_sets_both_glibc_thresholds(monkeypatch):
    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(cpu_fastpaths, "ENABLED", True)
    monkeypatch.setattr(cpu_fastpaths.sys, "platform", "linux")
    monkeypatch.setattr(cpu_fastpaths.ctypes, "CDLL", lambda name: Libc())
    assert cpu_fastpaths.tune_malloc()
    assert calls == [(-3, cpu_fastpaths.MMAP_THRESHOLD), (-1, cpu_fastpaths.TRIM_THRESHOLD)]  # M_MMAP, M_TRIM
    assert cpu_fastpaths.MMAP_THRESHOLD <= cpu_fastpaths.TRIM_THRESHOLD
    calls.clear()
    assert cpu_fastpaths.tune_malloc(1 << 30, 2**31 - 1) and calls == [(-3, 1 << 30), (-1, 2**31 - 1)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_tune_malloc_on_glibc_can_be_called_again():
    """The entry point calls it, and a float32 training again with its own thresholds: each call applies."""
    assert cpu_fastpaths.tune_malloc() and cpu_fastpaths.tune_malloc()
    assert cpu_fastpaths.tune_malloc(cpu_fastpaths.FP32_MMAP_THRESHOLD, cpu_fastpaths.FP32_TRIM_THRESHOLD)
    assert cpu_fastpaths.tune_malloc()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_malloc_trim_gives_the_pages_of_heap_holes_back():
    """Blocks freed between live ones are holes glibc keeps resident (no top to trim); malloc_trim releases them."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block, count = 64 << 10, 1600  # 100 MB in blocks under glibc's mmap threshold: on the heap
    blocks = [libc.malloc(block) for _ in range(count)]
    for address in blocks:
        ctypes.memset(address, 1, block)  # resident
    for address in blocks[::2]:
        libc.free(address)  # 50 MB of holes between live blocks
    before = cpu_fastpaths.resident_anonymous_bytes()
    assert cpu_fastpaths.malloc_trim()
    after = cpu_fastpaths.resident_anonymous_bytes()
    for address in blocks[1::2]:
        libc.free(address)
    assert before - after > 30 << 20


def test_heap_trim_trims_when_the_holes_outgrow_what_a_step_needs(monkeypatch):
    resident, trims = [], []
    monkeypatch.setattr(cpu_fastpaths, "resident_anonymous_bytes", lambda: resident.pop(0))
    monkeypatch.setattr(cpu_fastpaths, "malloc_trim", lambda: trims.append(len(trims)) or True)
    policy = cpu_fastpaths.HeapTrim(slack=0.25)
    trimmed = []
    for rss in (1000, 800, 990, 1001, 900, 1100, 1125, 1126, 700):
        resident.append(rss)
        trimmed.append(policy.after_step())
    # 1000: nothing measured yet, trim; 800: the step after a trim needs 800 (limit 1000); 1001 > 1000: trim;
    # 900: the need grows to 900 (limit 1125); 1126 > 1125: trim; 700: measured, the need stays 900
    assert trimmed == [True, False, False, True, False, False, False, True, False]
    assert policy.need == 900 and policy.trims == len(trims) == 3


def test_heap_trim_does_nothing_without_proc_or_glibc(monkeypatch):
    monkeypatch.setattr(cpu_fastpaths, "resident_anonymous_bytes", lambda: None)
    assert not cpu_fastpaths.HeapTrim().after_step()
    monkeypatch.setattr(cpu_fastpaths, "ENABLED", False)  # also what the switch turns off
    assert not cpu_fastpaths.malloc_trim()


def test_trim_heap_callback_watches_cpu_trainings_only(monkeypatch):
    from types import SimpleNamespace

    from translator.training.callbacks import TrimHeap
    from translator.training.system import Seq2SeqSystem

    for hparams in ({}, {"weight_average": 10.0}):  # every fit has it
        assert any(isinstance(c, TrimHeap) for c in Seq2SeqSystem.configure_callbacks(SimpleNamespace(hparams=hparams)))
    steps = []
    monkeypatch.setattr(cpu_fastpaths.HeapTrim, "after_step", lambda self: steps.append("step"))
    monkeypatch.setattr(cpu_fastpaths.HeapTrim, "trim", lambda self: steps.append("trim"))
    callback = TrimHeap()
    callback.on_fit_start(None, SimpleNamespace(device=torch.device("cpu")))
    callback.on_train_batch_end(None, None, None, None, 0)
    callback.on_validation_end(None, None)
    assert steps == ["step", "trim"]
    callback.on_fit_start(None, SimpleNamespace(device=torch.device("meta")))  # not a CPU training
    callback.on_train_batch_end(None, None, None, None, 1)
    callback.on_validation_end(None, None)
    assert steps == ["step", "trim"]


def test_limit_primitive_cache_sets_the_capacity_unless_the_environment_has_one(monkeypatch):
    for name in cpu_fastpaths._PRIMITIVE_CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cpu_fastpaths, "ENABLED", True)
    assert cpu_fastpaths.limit_primitive_cache(16)
    assert cpu_fastpaths.os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"
    assert not cpu_fastpaths.limit_primitive_cache()  # set once: the first value stays
    assert cpu_fastpaths.os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    monkeypatch.setenv("DNNL_PRIMITIVE_CACHE_CAPACITY", "512")  # the user's, under oneDNN's older name
    assert not cpu_fastpaths.limit_primitive_cache() and "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in cpu_fastpaths.os.environ
    monkeypatch.delenv("DNNL_PRIMITIVE_CACHE_CAPACITY")
    monkeypatch.setattr(cpu_fastpaths, "ENABLED", False)  # fast paths off: oneDNN's own default
    assert not cpu_fastpaths.limit_primitive_cache() and "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in cpu_fastpaths.os.environ


def test_bf16_training_on_the_cpu_caps_the_primitive_cache_before_the_bf16_probe(monkeypatch):
    from translator import cli, runtime

    calls = []
    monkeypatch.setattr(runtime, "limit_primitive_cache", lambda: calls.append("cap"))
    monkeypatch.setattr(runtime, "cpu_bf16_is_fast", lambda: calls.append("probe") or True)
    monkeypatch.setattr(runtime, "tune_malloc", lambda *thresholds: calls.append("malloc"))
    cli._cpu_precision({"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"}})
    assert calls == ["cap", "probe"]  # oneDNN reads the capacity at its first primitive: the probe's
    for trainer in ({"precision": "32-true", "accelerator": "cpu"}, {"precision": "bf16-mixed", "accelerator": "gpu"}):
        calls.clear()
        cli._cpu_precision({"trainer": trainer})
        assert "cap" not in calls, trainer


def test_float32_training_on_the_cpu_sets_the_float32_malloc_thresholds(monkeypatch, capsys):
    from translator import cli, runtime

    calls = []
    monkeypatch.setattr(runtime, "limit_primitive_cache", lambda: None)
    monkeypatch.setattr(runtime, "tune_malloc", lambda *thresholds: calls.append(thresholds))
    monkeypatch.setattr(runtime, "cpu_bf16_is_fast", lambda: False)  # an AVX2-only CPU
    config = {"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"}}
    cli._cpu_precision(config)
    assert config["trainer"]["precision"] == "32-true" and "no native bf16" in capsys.readouterr().err
    assert calls == [(cpu_fastpaths.FP32_MMAP_THRESHOLD, cpu_fastpaths.FP32_TRIM_THRESHOLD)]
    monkeypatch.setattr(runtime, "cpu_bf16_is_fast", lambda: True)  # native bf16: the entry point's thresholds stay
    calls.clear()
    config = {"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"}}
    cli._cpu_precision(config)
    assert config["trainer"]["precision"] == "bf16-mixed" and calls == []
    for precision in ("32-true", None):  # float32 asked for (or Lightning's default) on that CPU: its thresholds
        calls.clear()
        cli._cpu_precision({"trainer": {"precision": precision, "accelerator": "cpu"}})
        assert calls == [(cpu_fastpaths.FP32_MMAP_THRESHOLD, cpu_fastpaths.FP32_TRIM_THRESHOLD)], precision
    calls.clear()
    cli._cpu_precision({"trainer": {"precision": "32-true", "accelerator": "gpu"}})  # not a CPU run
    assert calls == []
