import csv

import pytest
import torch
from safetensors.torch import load_file

from ctscribe.errors import CtscribeError
from train.config import DinoConfig, TrainConfig
from train.dino import DinoStage
from train.loop import latest_checkpoint, lr_lambda, run_training
from train.sampler import StepBatchSampler

SMALL_DINO = DinoConfig(out_dim=32, hidden_dim=32, bottleneck_dim=16, n_local_crops=1, warmup_teacher_temp_steps=2)


def _cfg(manifest, out_dir, cache_dir, **overrides):
    base = dict(
        stage="dino",
        preset="tiny",
        manifest=str(manifest),
        out_dir=str(out_dir),
        cache_dir=str(cache_dir),
        steps=4,
        save_every=2,
        batch_size=2,
        grad_accum=2,
        warmup_steps=1,
        lr=1e-3,
        num_workers=0,
        progress=False,
        dino=SMALL_DINO,
    )
    return TrainConfig(**{**base, **overrides}).validate()


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_kill_and_resume_matches_an_uninterrupted_run(tiny_manifest, tmp_path):
    cache = tmp_path / "cache"
    straight_cfg = _cfg(tiny_manifest, tmp_path / "straight", cache)
    straight = run_training(straight_cfg, DinoStage(straight_cfg))
    assert straight.step == 4 and (straight.final_dir / "encoder.safetensors").is_file()

    # Interrupted after the step-2 checkpoint; then everything is built anew and resumed
    # (with a DataLoader worker this time: the data order must not depend on workers).
    cut_cfg = _cfg(tiny_manifest, tmp_path / "cut", cache)
    first = run_training(cut_cfg, DinoStage(cut_cfg), stop_after_steps=2)
    assert first.step == 2 and first.final_dir is None
    resumed_cfg = _cfg(tiny_manifest, tmp_path / "cut", cache, num_workers=1)
    resumed = run_training(resumed_cfg, DinoStage(resumed_cfg), resume=True)
    assert resumed.step == 4

    a = load_file(str(latest_checkpoint(tmp_path / "straight") / "model.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path / "cut") / "model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The model moved (a resume that silently restarted or skipped training would still match itself).
    first_ckpt = load_file(str(tmp_path / "cut" / "checkpoints" / "step_00000002" / "model.safetensors"))
    assert any(not torch.equal(a[k], first_ckpt[k]) for k in a)
    assert [r["loss"] for r in _rows(tmp_path / "straight" / "losses.csv")] == [
        r["loss"] for r in _rows(tmp_path / "cut" / "losses.csv")
    ]
    assert (tmp_path / "cut" / "losses.png").stat().st_size > 1000
    assert len(list((tmp_path / "cut" / "checkpoints").glob("step_*"))) == 2  # keep_checkpoints


def test_existing_checkpoints_need_resume(tiny_manifest, tmp_path):
    cfg = _cfg(tiny_manifest, tmp_path / "run", tmp_path / "cache", steps=1, save_every=1, grad_accum=1)
    run_training(cfg, DinoStage(cfg))
    with pytest.raises(CtscribeError, match="--resume"):
        run_training(cfg, DinoStage(cfg))


def test_sampler_is_a_function_of_the_batch_number():
    full = StepBatchSampler(5, 2, seed=3)
    it = iter(full)
    batches = [next(it) for _ in range(6)]
    late = iter(StepBatchSampler(5, 2, seed=3, start_batch=4))
    assert next(late) == batches[4]
    # Every epoch is a permutation; item seeds never repeat.
    stream = [i for b in batches for i, _ in b]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert len({s for b in batches for _, s in b}) == 12
    # Two processes split each global batch without overlap.
    r0, r1 = StepBatchSampler(8, 2, 0, rank=0, world=2), StepBatchSampler(8, 2, 0, rank=1, world=2)
    assert set(i for i, _ in r0.batch(0) + r1.batch(0) + r0.batch(1) + r1.batch(1)) == set(range(8))


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=10, warmup_steps=2, min_lr_ratio=0.1)
    f = lr_lambda(cfg)
    assert f(0) == 0.5 and f(1) == 1.0 and f(2) == 1.0
    assert abs(f(10) - 0.1) < 1e-9 and f(5) < f(3)
