"""Checkpoint directories: save -> load gives the same model; bad checkpoints are clear errors."""

import json

import pytest
import torch

import model
from ctscribe.errors import ErrorCode
from model.batching import pad_prompts, stack_cts
from model.errors import ModelError
from model.prompts import encode, report_prompt


def _randomise_lora(pipe, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pipe.model.decoder.lm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _logits(pipe, cts):
    m = pipe.model.eval()
    prompt = report_prompt(m.cfg.prompt, m.n_placeholders(cts[0].n_slices))
    enc = [encode(pipe.tokenizer, m.cfg.prompt, prompt, "Mild emphysema.") for _ in cts]
    batch = {**stack_cts(cts), **pad_prompts(enc, pipe.tokenizer.pad_token_id)}
    with torch.no_grad():
        out = m(batch)
    return out.logits, out.label_logits


@pytest.fixture(scope="module")
def trained_like(tiny_cts):
    pipe = model.build("tiny", seed=5)
    _randomise_lora(pipe)
    return pipe


def test_save_then_load_gives_identical_logits(trained_like, tiny_cts, tmp_path):
    trained_like.save(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "vision.safetensors", "adapter", "tokenizer", "decoder"} <= files
    loaded = model.load(tmp_path / "ckpt")
    assert loaded.config == trained_like.config
    assert loaded.model_hash == trained_like.model_hash
    assert loaded.weights_hash == trained_like.weights_hash
    assert loaded.model.decoder.has_lora
    a, b = _logits(trained_like, tiny_cts), _logits(loaded, tiny_cts)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert loaded.report(tiny_cts[:1])[0].text == trained_like.report(tiny_cts[:1])[0].text


def test_merged_checkpoint_matches_the_adapter_model(trained_like, tiny_cts, tmp_path):
    trained_like.save(tmp_path / "merged", merged=True)
    assert not (tmp_path / "merged" / "adapter").exists()
    assert trained_like.model.decoder.has_lora  # saving merged leaves the live model alone
    loaded = model.load(tmp_path / "merged")
    assert not loaded.model.decoder.has_lora and loaded.config.decoder.lora_r == 0
    a, b = _logits(trained_like, tiny_cts), _logits(loaded, tiny_cts)
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert loaded.weights_hash != trained_like.weights_hash  # different weights files, different hash


def test_weights_hash_tracks_the_weights(tiny_cts):
    a, b = model.build("tiny", seed=0), model.build("tiny", seed=0)
    assert a.weights_hash == b.weights_hash and a.model_hash == b.model_hash
    c = model.build("tiny", seed=1)
    assert c.weights_hash != a.weights_hash and c.model_hash == a.model_hash
    assert len(a.weights_hash) == 16 and len(a.model_hash) == 16


def test_config_json_is_the_whole_model_config(trained_like, tmp_path):
    trained_like.save(tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "config.json").read_text())
    assert doc["checkpoint"]["decoder_weights"] == "full"  # random-init base: its weights travel along
    assert doc["preprocess"]["n_axial"] == trained_like.config.preprocess.n_axial
    doc.pop("checkpoint")
    assert model.ModelConfig.from_dict(doc) == trained_like.config


def test_missing_and_foreign_checkpoints_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError) as err:
        model.load(tmp_path / "nowhere")
    assert err.value.code == ErrorCode.MODEL_NOT_READY
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text(json.dumps({"architectures": ["LlavaPhi3"]}))
    with pytest.raises(ModelError) as err:
        model.load(tmp_path / "foreign")
    assert err.value.code == ErrorCode.INVALID_REQUEST
    # A hub id with no network: the hub client fails, we answer model_not_ready.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelError) as err:
        model.load("nobody/no-such-ctscribe-model")
    assert err.value.code == ErrorCode.MODEL_NOT_READY


def test_truncated_vision_weights_are_refused(trained_like, tmp_path):
    trained_like.save(tmp_path / "t")
    path = tmp_path / "t" / "vision.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelError):
        model.load(tmp_path / "t")
