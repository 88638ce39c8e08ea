"""Tiny fusion configs and inputs shared by the fusion tests."""

from __future__ import annotations

import pytest
import torch

from fusion import FusionConfig

B, S, T = 2, 6, 5


def tiny_config(name: str, slice_tokens: bool = True) -> FusionConfig:
    compat = name.endswith("-compat")
    # the compat fusions read the prompt embeddings unprojected: d_prompt must equal d_model
    return FusionConfig(
        name=name,
        d_slice=12,
        d_volume=8,
        d_prompt=20 if compat else 14,
        d_model=20,
        d_proj=16,
        slice_tokens=slice_tokens,
    )


@pytest.fixture
def inputs():
    def make(cfg: FusionConfig, seed: int = 0) -> dict:
        g = torch.Generator().manual_seed(seed)
        slice_mask = torch.ones(B, S, dtype=torch.bool)
        slice_mask[1, -2:] = False  # the second volume has 4 real slices
        prompt_mask = torch.ones(B, T, dtype=torch.bool)
        prompt_mask[1, -2:] = False  # ... and 3 prompt tokens
        prompt_mask[0, 0] = False
        return {
            "volume": torch.randn(B, cfg.d_volume, generator=g),
            "slices": torch.randn(B, S, cfg.d_slice, generator=g),
            "prompt": torch.randn(B, T, cfg.d_prompt, generator=g),
            "prompt_mask": prompt_mask,
            "slice_mask": slice_mask,
            "plane_ids": torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2]]),
            "positions": torch.rand(B, S, generator=g),
        }

    return make
