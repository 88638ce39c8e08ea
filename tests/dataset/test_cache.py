import shutil

import numpy as np
import torch

from dataset.cache import FeatureCache
from dataset.ctrate import import_ctrate
from dataset.prepared import PrepareVolume, make_cache
from model.preprocess import PreprocessConfig
from tests.train.fake_ctrate import build_tree

TINY = PreprocessConfig(image_size=16, n_axial=2, n_coronal=1, n_sagittal=1, spacing_mm_zyx=(4.0, 4.0, 4.0))


def _samples(tmp_path):
    tree = build_tree(tmp_path / "data", {"train_1_a_1.nii.gz": "raw", "train_2_a_1_fixed.nii.gz": "hu"})
    return import_ctrate(tmp_path / "data", tree["reports"], metadata_csv=tree["metadata"]).samples


def test_hit_miss_and_invalidation(tmp_path):
    raw, hu = _samples(tmp_path)
    cache = make_cache(tmp_path / "cache", TINY, store_dtype="float32")
    first = cache.get(raw)
    assert not first.hit and cache.misses == 1
    expected = PrepareVolume(TINY)(raw)
    for name, tensor in expected.items():
        torch.testing.assert_close(first.tensors[name], tensor.float() if tensor.is_floating_point() else tensor)
    assert first.tensors["slices"].shape == (4, 3, 16, 16)

    again = cache.get(raw)
    assert again.hit and again.key == first.key and cache.hasher.computed == 1  # size/mtime fast path
    # The raw v1 volume and the HU v2 volume hold the same anatomy but are different files.
    assert cache.get(hu).key != first.key

    # A different preprocess config is a different entry.
    other = make_cache(tmp_path / "cache", PreprocessConfig(**{**TINY.to_dict(), "image_size": 8}))
    assert not other.get(raw).hit

    # Editing the file invalidates (content hash), moving it does not.
    moved = tmp_path / "moved.nii.gz"
    shutil.copy(raw.volume, moved)
    from dataclasses import replace

    assert cache.get(replace(raw, volume=str(moved))).hit
    shutil.copy(hu.volume, moved)
    assert not cache.get(replace(raw, volume=str(moved))).hit

    # The HU conversion is part of the key: the same file read as HU is another entry.
    assert cache.get(replace(raw, hu_source="hu", rescale_intercept=0.0)).key != first.key


def test_torn_entry_is_recomputed_and_float16_storage_is_close(tmp_path):
    raw, _ = _samples(tmp_path)
    cache = make_cache(tmp_path / "cache", TINY)  # float16 by default
    entry = cache.get(raw)
    path = cache.path_for(entry.key)
    path.write_bytes(b"garbage")
    again = cache.get(raw)
    assert not again.hit and path.stat().st_size > 100
    assert again.tensors["slices"].dtype == torch.float32
    exact = PrepareVolume(TINY)(raw)["slices"]
    np.testing.assert_allclose(again.tensors["slices"].numpy(), exact.numpy(), atol=5e-3)
    assert not list(path.parent.glob("*.tmp"))


def test_feature_cache(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    cache = FeatureCache(tmp_path, "enc0")
    a = cache.get("abc", compute)
    b = cache.get("abc", compute)
    assert len(calls) == 1 and torch.equal(a, b)
    assert FeatureCache(tmp_path, "enc1").get("abc", compute) is not None and len(calls) == 2


def test_feature_cache_key_tells_pooling_apart():
    """The same ViT weights pooled as cls or cls+mean give different features: different keys."""
    from dataclasses import replace

    import torch

    from dataset.cache import module_hash
    from model.config import ModelConfig
    from model.encoder import build_encoder

    cfg = ModelConfig.from_preset("tiny").encoder
    torch.manual_seed(0)
    cls = build_encoder(cfg)
    both = build_encoder(replace(cfg, pool="cls+mean"))
    both.load_state_dict(cls.state_dict())
    assert module_hash(cls) != module_hash(both)
    assert module_hash(cls) == module_hash(cls)
