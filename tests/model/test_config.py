"""Model config: presets, derived sizes, JSON round trip, refusals."""

import json

import pytest

from ctscribe.errors import ErrorCode
from model.config import PRESETS, EncoderConfig, ModelConfig
from model.errors import ModelError


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips_through_json(name):
    cfg = ModelConfig.from_preset(name)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert hash(again) == hash(cfg)  # frozen all the way down (tuples, not lists)


@pytest.mark.parametrize("name", PRESETS)
def test_sizes_are_derived_across_components(name):
    cfg = ModelConfig.from_preset(name)
    assert cfg.fusion.d_model == cfg.decoder.hidden_size
    assert cfg.fusion.d_prompt == cfg.decoder.hidden_size
    assert cfg.aggregator.d_slice == cfg.encoder.d_slice == cfg.fusion.d_slice
    assert cfg.fusion.d_volume == cfg.aggregator.d_volume
    assert cfg.preprocess.image_size == cfg.encoder.image_size


def test_preset_choices_follow_the_design():
    ct = ModelConfig.from_preset("ctscribe")
    assert ct.decoder.name_or_path == "microsoft/Phi-3-mini-4k-instruct"
    assert (ct.decoder.lora_r, ct.decoder.lora_alpha, ct.decoder.lora_dropout) == (16, 32, 0.05)
    assert (ct.encoder.hidden_size, ct.encoder.n_layers, ct.encoder.patch_size, ct.encoder.layer_norm_eps) == (
        768, 12, 16, 1e-6,
    )
    assert (ct.preprocess.n_axial, ct.preprocess.n_coronal, ct.preprocess.n_sagittal) == (32, 16, 16)
    compat = ModelConfig.from_preset("samf-compat")
    assert compat.preprocess.mode == "samf-compat" and compat.aggregator.variant == "compat"
    assert compat.prompt.vision_token == "<im_patch>" and compat.prompt.chat_format == "samf-raw"
    assert "smollm2" in ModelConfig.from_preset("demo").decoder.name_or_path.lower()


def test_replace_rederives_sizes():
    cfg = ModelConfig.from_preset("tiny")
    wider = cfg.replace(encoder=EncoderConfig(image_size=32, patch_size=8, hidden_size=48, n_layers=1, n_heads=2,
                                              intermediate_size=64, pool="cls+mean"))
    assert wider.encoder.d_slice == 96
    assert wider.aggregator.d_slice == 96 and wider.fusion.d_slice == 96


def test_inconsistent_sizes_are_refused():
    doc = ModelConfig.from_preset("tiny").to_dict()
    doc["fusion"]["d_model"] = 7
    with pytest.raises(ModelError) as err:
        ModelConfig.from_dict(doc)
    assert err.value.code == ErrorCode.INVALID_REQUEST


def test_unknown_preset_and_keys_are_refused():
    with pytest.raises(ModelError):
        ModelConfig.from_preset("huge")
    doc = ModelConfig.from_preset("tiny").to_dict()
    doc["encoder"]["n_layer"] = 3  # typo must not be ignored silently
    with pytest.raises(ModelError):
        ModelConfig.from_dict(doc)


def test_labels_import_without_torch():
    import subprocess
    import sys

    code = "import sys, model, ctscribe.labels; assert len(ctscribe.labels.CTRATE_LABELS) == 18; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
