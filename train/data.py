"""Datasets for the three stages, all reading preprocessed volumes through the cache.

Every dataset is indexed by `(index, seed)` items from `StepBatchSampler`; the seed drives
any randomness of the item (crops, views), so batches are reproducible across workers and
resumes. Volumes are preprocessed once (`warm_cache`, main process first) and afterwards
only read from the cache; the DINO dataset reads single slices lazily from the
`.safetensors` file instead of the whole volume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from safetensors import safe_open
from torch.utils.data import Dataset

from ctscribe.errors import CtscribeError, ErrorCode
from dataset.cache import PreprocessCache
from dataset.manifest import Sample, filter_split, read_manifest

log = logging.getLogger(__name__)


def load_samples(manifest: str, split: str) -> list[Sample]:
    if not manifest:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, "training config: 'manifest' is required")
    return filter_split(read_manifest(manifest, check_files=True), split or None)


def warm_cache(samples: list[Sample], cache: PreprocessCache, progress: bool = False) -> list[str]:
    """Preprocess every sample not cached yet; returns the cache keys in sample order."""
    iterator = samples
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(samples, desc="preprocess", dynamic_ncols=True)
    keys = [cache.get(s).key for s in iterator]
    log.info("preprocess cache: %d hits, %d misses", cache.hits, cache.misses)
    return keys


class VolumeDataset(Dataset):
    """One item per volume: its prepared tensors (+ the item seed and sample index)."""

    def __init__(self, samples: list[Sample], cache: PreprocessCache, keys: list[str]):
        self.samples = samples
        self.cache = cache
        self.paths = [cache.path_for(k) for k in keys]
        self.keys = keys

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int, slices: bool = True) -> dict[str, torch.Tensor]:
        """The volume's prepared tensors. `slices=False` (cached encoder features stand in for
        the images) reads only the per-slice metadata, and `slices` is an (S, 1, 1, 1) stub
        that keeps the slice count: reading the images is most of a feature-cached step."""
        if slices:
            from safetensors.torch import load_file

            tensors = load_file(str(self.paths[index]))
        else:
            from safetensors import safe_open

            with safe_open(str(self.paths[index]), framework="pt") as f:
                tensors = {n: f.get_tensor(n) for n in f.keys() if n != "slices"}
                n_slices = f.get_slice("slices").get_shape()[0]
            tensors["slices"] = torch.zeros(n_slices, 1, 1, 1)
        return {n: t.float() if t.is_floating_point() else t for n, t in tensors.items()}

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        return {"index": index, "seed": seed, **self.load(index)}


@dataclass(frozen=True)
class SliceRef:
    volume: int
    slice: int
    plane: int


class SliceDataset(Dataset):
    """One item per slice of every plane of every volume (stage 1); reads one slice per item."""

    def __init__(self, samples: list[Sample], cache: PreprocessCache, keys: list[str], transform):
        self.paths = [str(cache.path_for(k)) for k in keys]
        self.transform = transform
        self.refs: list[SliceRef] = []
        for v, path in enumerate(self.paths):
            with safe_open(path, framework="pt") as f:
                planes = f.get_tensor("plane_ids").tolist()
            self.refs.extend(SliceRef(v, s, p) for s, p in enumerate(planes))

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        ref = self.refs[index]
        with safe_open(self.paths[ref.volume], framework="pt") as f:
            image = f.get_slice("slices")[ref.slice].float()  # (3, H, W)
        generator = torch.Generator().manual_seed(seed)
        return self.transform(image, generator)


def prepared_batch(cache: PreprocessCache, keys: list[str]) -> dict[str, torch.Tensor]:
    """The cached prepared volumes of `keys`, widened to float32 and padded into one batch."""
    from safetensors.torch import load_file

    loaded = [load_file(str(cache.path_for(k))) for k in keys]
    return pad_prepared([{n: t.float() if t.is_floating_point() else t for n, t in x.items()} for x in loaded])


def pad_prepared(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack volumes with different slice counts: pad to the longest, `slice_mask` marks real slices."""
    n_max = max(int(it["slices"].shape[0]) for it in items)
    b = len(items)
    _, c, h, w = items[0]["slices"].shape
    slices = torch.zeros(b, n_max, c, h, w)
    plane_ids = torch.zeros(b, n_max, dtype=torch.long)
    positions = torch.zeros(b, n_max)
    slice_index = torch.zeros(b, n_max, dtype=torch.long)
    mask = torch.zeros(b, n_max, dtype=torch.bool)
    for i, it in enumerate(items):
        n = int(it["slices"].shape[0])
        slices[i, :n] = it["slices"]
        plane_ids[i, :n] = it["plane_ids"].long()
        positions[i, :n] = it["positions"].float()
        slice_index[i, :n] = it["slice_index"].long()
        mask[i, :n] = True
    return {
        "slices": slices,  # (B, S, 3, H, W)
        "plane_ids": plane_ids,
        "positions": positions,
        "slice_index": slice_index,
        "slice_mask": mask,
    }


def label_targets(labels: dict[str, int] | None) -> torch.Tensor:
    """(18,) float targets in CT-RATE label order; zeros for a sample without labels."""
    from ctscribe.labels import CTRATE_LABELS

    if not labels:
        return torch.zeros(len(CTRATE_LABELS))
    return torch.tensor([float(labels[n]) for n in CTRATE_LABELS])


def collate_labelled_volumes(items: list[dict]) -> dict:
    """Items {"volume", "label_targets", "label_mask"} -> padded volumes (cached features in
    place of the slices when items carry them) + stacked label targets and masks."""
    batch = pad_prepared([it["volume"] for it in items])
    if "slice_features" in items[0]["volume"]:
        feats = [it["volume"]["slice_features"] for it in items]
        batch["slice_features"] = pad_slice_features(feats, batch["slices"].shape[1])  # (B, S, d_slice)
        del batch["slices"]  # the model reads the features instead of running the encoder
    batch["label_targets"] = torch.stack([it["label_targets"] for it in items])
    batch["label_mask"] = torch.stack([it["label_mask"] for it in items])
    for key in ("attribute_targets", "attribute_mask"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    return batch


def pad_slice_features(features: list[torch.Tensor], n_max: int) -> torch.Tensor:
    """Per-volume cached encoder features (S_i, d_slice) -> (B, n_max, d_slice), zero-padded."""
    padded = torch.zeros(len(features), n_max, features[0].shape[-1])
    for i, f in enumerate(features):
        padded[i, : f.shape[0]] = f
    return padded
