"""Stage 2 and 3 on the tiny preset: the loss falls on a fixed batch; finetune writes a loadable checkpoint."""

import torch

from ctscribe.labels import CTRATE_LABELS
from dataset.manifest import read_manifest
from train.config import FinetuneConfig, TrainConfig, WarmupConfig
from train.finetune import FinetuneStage, mix_items
from train.loop import run_training
from train.warmup import WarmupStage, info_nce, two_views


def _cfg(manifest, tmp_path, stage, **overrides):
    base = dict(
        stage=stage,
        preset="tiny",
        manifest=str(manifest),
        out_dir=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        steps=2,
        save_every=2,
        batch_size=4,
        warmup_steps=0,
        lr=3e-3,
        num_workers=0,
        progress=False,
    )
    return TrainConfig(**{**base, **overrides}).validate()


def _fixed_batch(stage, n=4):
    dataset = stage.dataset()
    return stage.collate([dataset[(i % len(dataset), 100 + i)] for i in range(n)])


def _descends(module, params, batch, steps=6):
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    losses = []
    module.train()
    for step in range(steps):
        loss = module(batch, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_warmup_views_and_loss(tiny_manifest, tmp_path):
    plane_ids = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    a, b = two_views(plane_ids, torch.Generator().manual_seed(1))
    planes_a, planes_b = set(plane_ids[a].tolist()), set(plane_ids[b].tolist())
    assert len(planes_a) == 2 and len(planes_b) == 2 and planes_a != planes_b
    shared = (planes_a & planes_b).pop()
    on_shared_a = [i for i in a.tolist() if plane_ids[i] == shared]
    on_shared_b = [i for i in b.tolist() if plane_ids[i] == shared]
    assert not set(on_shared_a) & set(on_shared_b)  # adjacent slices, never the same ones

    z = torch.randn(5, 8)
    loss, acc = info_nce(z, z, 0.07)
    assert acc == 1.0 and loss < info_nce(z, torch.randn(5, 8), 0.07)[0]

    for cache_features in (True, False):
        cfg = _cfg(tiny_manifest, tmp_path, "warmup", warmup=WarmupConfig(cache_features=cache_features))
        stage = WarmupStage(cfg)
        module = stage.build_module()
        batch = _fixed_batch(stage)
        assert ("slice_features" in batch["a"]) == cache_features
        encoder_before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
        losses = _descends(module, stage.parameter_groups(module), batch)
        assert losses[-1] < losses[0] - 1e-3, losses
        assert all(torch.equal(v, module.encoder.state_dict()[k]) for k, v in encoder_before.items())


def test_finetune_loss_falls_and_only_the_right_parts_train(tiny_manifest, tmp_path):
    cfg = _cfg(tiny_manifest, tmp_path, "finetune")
    stage = FinetuneStage(cfg)
    module = stage.build_module()
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or not n.startswith("model.decoder.") for n in trainable)
    assert not any(n.startswith("model.encoder.") for n in trainable)
    assert any(n.startswith("model.aggregator.") for n in trainable)
    assert any(n.startswith("model.label_head.") for n in trainable)
    batch = _fixed_batch(stage)
    # Loss only on answer tokens: every labelled position lies after the prompt.
    assert bool(((batch["labels"] != -100) & batch["prompt_mask"]).any()) is False
    assert batch["label_mask"].all()
    params = [p for p in module.parameters() if p.requires_grad]
    losses = _descends(module, params, batch, steps=5)
    assert losses[-1] < losses[0] - 1e-3, losses


def test_mix_items_reaches_the_requested_share():
    class S:
        def __init__(self, n_q):
            self.report, self.questions = "r", ("q",) * n_q

    samples = [S(1) for _ in range(4)]
    items = mix_items(samples, 0.75)
    share = sum(it.question >= 0 for it in items) / len(items)
    assert abs(share - 0.75) < 1e-9
    assert all(it.question < 0 for it in mix_items(samples, 0.0))


def test_finetune_run_writes_a_checkpoint_model_load_reads(tiny_manifest, tmp_path):
    import model

    cfg = _cfg(tiny_manifest, tmp_path, "finetune", batch_size=2, finetune=FinetuneConfig(cache_features=True))
    stage = FinetuneStage(cfg)
    result = run_training(cfg, stage)
    final = result.final_dir
    assert (final / "config.json").is_file() and (final / "vision.safetensors").is_file()
    assert (final / "adapter").is_dir() and any((final / "tokenizer").iterdir())
    loaded = model.load(final)
    trained = stage.pipe.model.state_dict()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, trained[key], msg=key)
    # The trained pipeline answers a multiple-choice question from the manifest's volumes.
    sample = read_manifest(cfg.manifest)[0]
    from dataset.prepared import PrepareVolume

    ct = PrepareVolume(loaded.config.preprocess)(sample)
    from model import PreparedCT

    out = loaded.choose([PreparedCT(**ct)], ["Is there a pleural effusion?"], [["yes", "no"]])[0]
    assert out.answer in ("yes", "no") and abs(sum(out.probabilities) - 1) < 1e-6


def test_label_warmup_trains_the_vision_side_and_hands_it_to_finetune(tiny_manifest, tmp_path):
    from safetensors.torch import load_file

    from train.label_warmup import LabelWarmupModule

    labels = ("Pleural effusion", "Lung nodule", "Emphysema")
    warm = WarmupConfig(objective="labels", train_encoder=True, label_names=labels)
    cfg = _cfg(tiny_manifest, tmp_path, "warmup", warmup=warm)
    stage = WarmupStage(cfg)
    module = stage.build_module()
    assert isinstance(module, LabelWarmupModule)
    batch = _fixed_batch(stage)
    assert "slices" in batch and "slice_features" not in batch  # a trained encoder cannot use cached features
    used = batch["label_mask"][0]
    assert used.sum() == len(labels) and all(used[CTRATE_LABELS.index(n)] for n in labels)
    encoder_before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    losses = _descends(module, stage.parameter_groups(module), batch)
    assert losses[-1] < losses[0] - 1e-3, losses
    assert not all(torch.equal(v, module.encoder.state_dict()[k]) for k, v in encoder_before.items())

    # The loss ignores labels outside label_names: changing their targets changes nothing.
    flipped = dict(batch, label_targets=torch.where(used, batch["label_targets"], 1 - batch["label_targets"]))
    module.eval()
    torch.testing.assert_close(module(batch, 0)["loss"], module(flipped, 0)["loss"])

    result = run_training(cfg, WarmupStage(cfg))
    final = result.final_dir
    for name in ("encoder", "aggregator", "label_head"):
        assert (final / f"{name}.safetensors").is_file(), name

    ft_cfg = _cfg(
        tiny_manifest,
        tmp_path / "ft",
        "finetune",
        init_encoder=str(final / "encoder.safetensors"),
        init_aggregator=str(final / "aggregator.safetensors"),
        init_label_head=str(final / "label_head.safetensors"),
    )
    ft = FinetuneStage(ft_cfg).build_module()
    for name in ("encoder", "aggregator", "label_head"):
        exported = load_file(str(final / f"{name}.safetensors"))
        for key, value in getattr(ft.model, name).state_dict().items():
            torch.testing.assert_close(value, exported[key], msg=f"{name}.{key}")


def test_label_warmup_with_a_frozen_encoder_reads_cached_features(tiny_manifest, tmp_path):
    cfg = _cfg(tiny_manifest, tmp_path, "warmup", warmup=WarmupConfig(objective="labels"))
    stage = WarmupStage(cfg)
    module = stage.build_module()
    batch = _fixed_batch(stage)
    assert "slice_features" in batch and "slices" not in batch
    encoder_before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    losses = _descends(module, stage.parameter_groups(module), batch)
    assert losses[-1] < losses[0] - 1e-3, losses
    assert all(torch.equal(v, module.encoder.state_dict()[k]) for k, v in encoder_before.items())

    # The frozen encoder is exported too: the aggregator was fitted to its features.
    from safetensors.torch import load_file

    run_stage = WarmupStage(cfg)
    final = run_training(cfg, run_stage).final_dir
    exported = load_file(str(final / "encoder.safetensors"))
    for key, value in run_stage.module.encoder.state_dict().items():
        assert torch.equal(value, exported[key]), key


def test_warmup_objective_and_label_names_are_checked(tiny_manifest, tmp_path):
    import pytest

    from ctscribe.errors import CtscribeError

    with pytest.raises(CtscribeError, match="warmup.objective"):
        _cfg(tiny_manifest, tmp_path, "warmup", warmup=WarmupConfig(objective="mse"))
    with pytest.raises(CtscribeError, match="Pleural efusion"):
        _cfg(tiny_manifest, tmp_path, "warmup", warmup=WarmupConfig(objective="labels", label_names=("Pleural efusion",)))
