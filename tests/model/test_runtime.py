"""Inference on the machine at hand (model/runtime.py) and the serving form of a pipeline
(`Pipeline.for_inference`): merged LoRA, static cache, the identity kept."""

from __future__ import annotations

import pytest
import torch

from model import runtime
from model.errors import ModelError
from model.generation import GenerationParams


def test_explicit_thread_settings_win(monkeypatch):
    monkeypatch.delenv("CTSCRIBE_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.inference_threads() == 3
    monkeypatch.setenv("CTSCRIBE_THREADS", "1")
    assert runtime.inference_threads() == 1
    monkeypatch.setenv("CTSCRIBE_THREADS", "zero")
    with pytest.raises(ModelError, match="CTSCRIBE_THREADS"):
        runtime.inference_threads()


def test_threads_follow_the_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.delenv("CTSCRIBE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(64)))
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(runtime, "_CGROUP_V2", cpu_max)
    cpu_max.write_text("150000 100000\n")  # docker run --cpus 1.5
    assert runtime.cgroup_cpu_limit() == 2 and runtime.inference_threads() == 2
    cpu_max.write_text("max 100000\n")  # no quota: the affinity mask decides
    assert runtime.cgroup_cpu_limit() is None and runtime.inference_threads() == 64


def test_cgroup_v1_quota(monkeypatch, tmp_path):
    quota, period = tmp_path / "quota", tmp_path / "period"
    quota.write_text("300000")
    period.write_text("100000")
    monkeypatch.setattr(runtime, "_CGROUP_V2", tmp_path / "absent")
    monkeypatch.setattr(runtime, "_CGROUP_V1", (quota, period))
    assert runtime.cgroup_cpu_limit() == 3
    quota.write_text("-1")
    assert runtime.cgroup_cpu_limit() is None


def test_decode_dtype_policy(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    want = "int8" if hasattr(torch.ops.aten, "_weight_int8pack_mm") else torch.bfloat16
    assert runtime.decode_dtype("auto", "cpu") == want
    assert runtime.decode_dtype("auto", "cuda") is None  # a GPU keeps the checkpoint's dtype
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.decode_dtype("auto", "cpu") is None  # emulated bf16 is slow: keep float32
    assert runtime.decode_dtype("float32", "cpu") == torch.float32
    assert runtime.decode_dtype("int8", "cpu") == "int8"
    assert runtime.decode_dtype("bfloat16", "cpu") == torch.bfloat16
    assert runtime.decode_dtype("config", "cpu") is None
    with pytest.raises(ModelError, match="decode dtype"):
        runtime.decode_dtype("int4", "cpu")


def _with_trained_lora(pipe, seed: int):
    """Give the LoRA matrices non-zero values (a fresh adapter's B is zero: merging would be a no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pipe.model.decoder.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return pipe


def test_for_inference_in_float32_gives_the_unmerged_greedy_output(tiny_cts):
    import model

    plain = _with_trained_lora(model.build("tiny", seed=3), seed=1)
    served = _with_trained_lora(model.build("tiny", seed=3), seed=1)
    identity = (plain.model_hash, plain.weights_hash)
    served.for_inference(torch.float32)
    assert not served.model.decoder.has_lora and served._fast is not None
    assert (served.model_hash, served.weights_hash) == identity  # the same model, served
    params = GenerationParams(max_new_tokens=24)
    questions = ["Is there a nodule?", "Describe the heart size."]
    want = plain.report(tiny_cts, params) + plain.answer(tiny_cts, questions, params)
    got = served.report(tiny_cts, params) + served.answer(tiny_cts, questions, params)
    assert [g.text for g in got] == [w.text for w in want]
    assert any(w.n_tokens > 4 for w in want)
    # the adapters changed the output: the comparison is not of two base models
    base = model.build("tiny", seed=3)
    assert [o.text for o in base.report(tiny_cts, params)] != [w.text for w in want[:2]]


def test_for_inference_in_bfloat16_runs_the_decoder_in_bfloat16(tiny_cts):
    import model

    pipe = model.build("tiny", seed=3).for_inference(torch.bfloat16)
    assert pipe.model.decoder.dtype == torch.bfloat16
    out = pipe.report(tiny_cts, GenerationParams(max_new_tokens=8))
    assert len(out) == len(tiny_cts) and all(o.n_tokens >= 1 for o in out)


@pytest.mark.skipif(not hasattr(torch.ops.aten, "_weight_int8pack_mm"), reason="no int8 weight-only kernel")
def test_int8_weight_only_linear_is_close_to_the_float_layer():
    from model.quantize import Int8WeightOnlyLinear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(3, 5, 64)
    quantized = Int8WeightOnlyLinear(linear)
    assert quantized.weight_int8.dtype == torch.int8 and quantized.scales.shape == (48,)
    want = linear(x)
    got = quantized(x).float()
    assert got.shape == want.shape
    # per-row absmax int8: the error is a fraction of a quantisation step per weight
    assert (got - want).abs().max() < 0.02 * want.abs().max()


@pytest.mark.skipif(not hasattr(torch.ops.aten, "_weight_int8pack_mm"), reason="no int8 weight-only kernel")
def test_for_inference_int8_quantises_every_decoder_linear(tiny_cts):
    import model
    from model.quantize import Int8WeightOnlyLinear

    pipe = model.build("tiny", seed=3).for_inference("int8")
    lm = pipe.model.decoder.lm
    assert not any(isinstance(m, torch.nn.Linear) for m in lm.modules())
    assert sum(isinstance(m, Int8WeightOnlyLinear) for m in lm.modules()) > 0
    out = pipe.report(tiny_cts, GenerationParams(max_new_tokens=8))
    assert all(o.n_tokens >= 1 for o in out)
