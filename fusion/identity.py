"""The no-attention baseline: visual tokens are plain projections of z3d and the slices.

It ignores the prompt. Its slice attention is uniform over the real slices (it has no
opinion about which slice matters), so key-slice evidence from it is uninformative.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion.base import Fusion, FusionConfig, FusionOutput, SliceTokenizer, full_mask, register_fusion


@register_fusion("identity")
class IdentityFusion(Fusion):
    """tokens = [W_vol z3d ; W_slice z2d (+ plane/position)]."""

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        self.w_vol = nn.Linear(cfg.d_volume, cfg.d_model)
        self.slice_tokenizer = (
            SliceTokenizer(cfg.d_slice, cfg.d_model, cfg.n_planes) if cfg.slice_tokens else None
        )

    def n_tokens(self, n_slices: int) -> int:
        return 1 + n_slices if self.cfg.slice_tokens else 1

    def forward(
        self,
        volume: torch.Tensor,
        slices: torch.Tensor,
        prompt: torch.Tensor,
        prompt_mask: torch.Tensor,
        slice_mask: torch.Tensor | None = None,
        plane_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> FusionOutput:
        s_mask = full_mask(slices, slice_mask)  # (B, S)
        n_valid = s_mask.sum(dim=1, keepdim=True).clamp_min(1)
        alpha = s_mask.to(slices.dtype) / n_valid  # (B, S) uniform over real slices
        tokens = self.w_vol(volume).unsqueeze(1)  # (B, 1, d_model)
        token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        if self.slice_tokenizer is not None:
            per_slice = self.slice_tokenizer(slices, plane_ids, positions)  # (B, S, d_model)
            tokens = torch.cat([tokens, per_slice], dim=1)  # (B, 1 + S, d_model)
            token_mask = torch.cat([token_mask, s_mask], dim=1)
        return FusionOutput(tokens=tokens, slice_attention=alpha, extras={"token_mask": token_mask})
