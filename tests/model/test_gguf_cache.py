"""The one-time GGUF conversion cache (model/gguf_cache.py): one plain note while converting,
later starts reuse the verified directory, a damaged or unverifiable entry is converted again.

The GGUF reader itself is replaced by a tiny random Llama (mocked: the real SmolLM2 conversion
takes ~30 s and is exercised by the demo-checkpoint tests); everything around it is real.
"""

from __future__ import annotations

import logging

import pytest
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from model import gguf_cache
from model.config import PromptConfig
from model.tokenizer import build_tiny_tokenizer


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A GGUF 'file' whose conversion builds a tiny Llama; returns the list of conversions done."""
    gguf = tmp_path / "pkg" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF fake")
    monkeypatch.setenv("CTSCRIBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gguf_cache, "gguf_file", lambda spec: gguf)
    conversions = []

    def fake_lm(*args, **kwargs):
        conversions.append(kwargs.get("gguf_file"))
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(vocab_size=600, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_lm)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *a, **k: build_tiny_tokenizer(PromptConfig(chat_format="chatml")))
    return conversions


def test_converts_once_with_one_note_then_reuses(fake_gguf, caplog):
    with caplog.at_level(logging.INFO, logger="ctscribe.model"):
        first = gguf_cache.convert_gguf("gguf:pkg/tiny.gguf")
    assert len(fake_gguf) == 1
    assert [r.getMessage() for r in caplog.records] == ["preparing the demo language model (one time, ~30 s)..."]
    assert (first / gguf_cache.GGUF_MANIFEST).is_file() and (first / "model.safetensors").is_file()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ctscribe.model"):
        again = gguf_cache.convert_gguf("gguf:pkg/tiny.gguf")
    assert again == first and len(fake_gguf) == 1 and not caplog.records


@pytest.mark.parametrize("damage", ["flip-a-byte", "truncate", "no-manifest", "manifest-garbage"])
def test_a_damaged_entry_is_converted_again(fake_gguf, caplog, damage):
    target = gguf_cache.convert_gguf("gguf:pkg/tiny.gguf")
    weights = target / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    if damage == "flip-a-byte":
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "no-manifest":
        (target / gguf_cache.GGUF_MANIFEST).unlink()
    else:
        (target / gguf_cache.GGUF_MANIFEST).write_text("{not json")
    with caplog.at_level(logging.INFO, logger="ctscribe.model"):
        again = gguf_cache.convert_gguf("gguf:pkg/tiny.gguf")
    assert len(fake_gguf) == 2
    assert any("cannot be verified" in r.getMessage() for r in caplog.records)
    assert (again / "model.safetensors").read_bytes() == original  # the same conversion, whole again
    assert gguf_cache.manifest_matches(again)
