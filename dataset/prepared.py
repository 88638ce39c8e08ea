"""Prepared volumes: a manifest sample's CT read as HU and run through the model's preprocess.

`make_cache` builds the preprocessing cache whose misses `PrepareVolume` fills; training
and evaluation both read volumes through it, and `prepared_ct` turns the cached tensors
back into the `PreparedCT` the model takes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dataset.cache import PreprocessCache
from dataset.manifest import Sample
from dataset.volume_io import load_hu

PREPARED_FIELDS = ("slices", "plane_ids", "positions", "slice_index")


class PrepareVolume:
    """Cache miss path: read a manifest sample's volume as HU and run the model's preprocess."""

    def __init__(self, preprocess_config):
        self.preprocess_config = preprocess_config

    def __call__(self, sample: Sample) -> dict[str, torch.Tensor]:
        from model.preprocess import preprocess

        hu, spacing, orientation_in = load_hu(
            sample.volume,
            hu_source=sample.hu_source,
            rescale_slope=sample.rescale_slope,
            rescale_intercept=sample.rescale_intercept,
            spacing_mm_zyx=sample.spacing_mm_zyx,
        )
        ct = preprocess(hu, spacing, self.preprocess_config, orientation_in)
        return {name: getattr(ct, name) for name in PREPARED_FIELDS}


def make_cache(cache_dir: str | Path, preprocess_config, store_dtype: str = "float16") -> PreprocessCache:
    return PreprocessCache(cache_dir, preprocess_config, PrepareVolume(preprocess_config), store_dtype=store_dtype)


def prepared_ct(tensors: dict[str, torch.Tensor]):
    """Cached tensors -> model.PreparedCT."""
    from model.preprocess import PreparedCT

    return PreparedCT(**{name: tensors[name] for name in PREPARED_FIELDS})
