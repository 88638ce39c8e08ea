"""Diagnosis-driven decoding in training: attribute heads in the label warm-up, guidance mixed
from truth (with noise) and the heads' predictions in fine-tuning, and the hand-over between them."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from model.attributes import ATTRIBUTES
from model.config import PHANTOM_LABELS, ModelConfig
from train.config import FinetuneConfig, TrainConfig, WarmupConfig
from train.finetune import FinetuneStage
from train.guidance_mix import GuidanceMix
from train.loop import run_training
from train.warmup import WarmupStage


def _guided_config(tmp_path) -> str:
    tiny = ModelConfig.from_preset("tiny")
    cfg = tiny.replace(
        prompt=replace(tiny.prompt, guidance="findings", guidance_labels=PHANTOM_LABELS),
        labels=replace(tiny.labels, attributes=tuple(ATTRIBUTES)),
    )
    path = tmp_path / "guided.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return str(path)


def _cfg(manifest, tmp_path, stage, **overrides):
    base = dict(stage=stage, preset="tiny", model_config=_guided_config(tmp_path), manifest=str(manifest),
                out_dir=str(tmp_path / stage), cache_dir=str(tmp_path / "cache"), steps=2, save_every=2,
                batch_size=2, warmup_steps=0, lr=3e-3, num_workers=0, progress=False)
    return TrainConfig(**{**base, **overrides}).validate()


def test_guidance_mix_is_seeded_and_noisy_in_the_stated_proportions():
    mix = GuidanceMix(PHANTOM_LABELS, head_fraction=0.0, label_noise=0.1, attribute_noise=0.0)
    labels = {name: int(name == "Lung nodule") for name in PHANTOM_LABELS}
    attributes = {"nodule_lobe": ["left upper"], "nodule_size": ["6 to 10 mm"]}
    texts = [mix.text(seed, labels, attributes, None) for seed in range(400)]
    assert texts == [mix.text(seed, labels, attributes, None) for seed in range(400)]  # a function of the seed
    clean = "Seen: lung nodule (left upper lobe, 6 to 10 mm)."
    share_clean = sum(t.splitlines()[0] == clean for t in texts) / len(texts)
    assert 0.1 < share_clean < 0.5  # 13 labels, each flipped with p 0.1: (0.9)^13 ~ 0.25 unchanged
    heads = {"Cardiomegaly": {}}
    always_heads = GuidanceMix(PHANTOM_LABELS, head_fraction=1.0)
    assert always_heads.text(3, labels, attributes, heads).startswith("Seen: cardiomegaly.")
    exact = GuidanceMix(PHANTOM_LABELS, head_fraction=0.0, label_noise=0.0, attribute_noise=0.0)
    assert exact.text(5, labels, attributes, heads).splitlines()[0] == clean


def _manifest_with_findings(tiny_manifest, tmp_path):
    """The tiny set with phantom-style reports that name a nodule's lobe and an effusion's side."""
    from dataset.manifest import read_manifest, write_manifest

    lobes = ("right upper", "left lower", "right middle", "left upper")
    samples = []
    for i, s in enumerate(read_manifest(tiny_manifest)):
        side = ("right", "left")[i % 2]
        level, lung = lobes[i].split()[1], lobes[i].split()[0]
        findings = (f"A nodule measuring {4 + 3 * i} mm was observed in the {level} lobe of the {lung} lung. "
                    f"There is a {side} pleural effusion with a thickness of 20 mm.")
        labels = {**(s.labels or {}), "Lung nodule": 1, "Pleural effusion": 1}
        samples.append(replace(s, volume=str((tiny_manifest.parent / s.volume).resolve()), findings=findings,
                               labels=labels))
    return write_manifest(tmp_path / "findings.jsonl", samples)


def test_attribute_heads_train_in_the_label_warmup_and_reach_finetune(tiny_manifest, tmp_path):
    from safetensors.torch import load_file

    tiny_manifest = _manifest_with_findings(tiny_manifest, tmp_path)
    warm = _cfg(tiny_manifest, tmp_path, "warmup", warmup=WarmupConfig(objective="labels"))
    stage = WarmupStage(warm)
    module = stage.build_module()
    assert module.attribute_head is not None
    dataset = stage.dataset()
    batch = stage.collate([dataset[(i, i)] for i in range(len(dataset))])
    assert batch["attribute_targets"].shape[0] == len(dataset) and batch["attribute_mask"].any()
    out = module(batch, 0)
    assert "attribute_loss" in out and torch.isfinite(out["loss"])
    result = run_training(warm, WarmupStage(warm))
    final = result.final_dir
    assert (final / "attribute_head.safetensors").is_file() and (final / "model_config.json").is_file()

    ft = _cfg(
        tiny_manifest, tmp_path, "finetune",
        init_encoder=str(final / "encoder.safetensors"), init_aggregator=str(final / "aggregator.safetensors"),
        init_label_head=str(final / "label_head.safetensors"),
        init_attribute_head=str(final / "attribute_head.safetensors"),
        trained_on="synthetic-phantom",
        finetune=FinetuneConfig(cache_features=True, label_loss_weight=0.0, train_aggregator=False,
                                guidance_head_fraction=0.5),
    )
    stage = FinetuneStage(ft)
    module = stage.build_module()
    head = load_file(str(final / "attribute_head.safetensors"))
    for key, value in module.model.attribute_head.state_dict().items():
        torch.testing.assert_close(value, head[key])
    assert not any(p.requires_grad for p in module.model.attribute_head.parameters())  # frozen with weight 0
    data = stage.dataset()
    prompt = stage.pipe.tokenizer.decode(data[(0, 7)]["text"].input_ids)
    assert "Seen: " in prompt and "Not seen: " in prompt
    exact = FinetuneStage(replace(ft, finetune=replace(
        ft.finetune, guidance_head_fraction=0.0, guidance_label_noise=0.0, guidance_attribute_noise=0.0)))
    exact.build_module()
    data = exact.dataset()
    sample = data.samples[0]
    text = exact.pipe.tokenizer.decode(data[(data.items.index(next(it for it in data.items if it.sample == 0)), 1)]["text"].input_ids)
    lobe = "right upper" if "upper lobe of the right" in sample.findings else None
    assert lobe and f"lung nodule ({lobe} lobe, smaller than 6 mm)" in text and "pleural effusion (right)" in text
    result = run_training(ft, FinetuneStage(ft))
    saved = json.loads((result.final_dir / "config.json").read_text())
    assert saved["checkpoint"]["trained_on"] == "synthetic-phantom"
    assert saved["prompt"]["guidance"] == "findings"
