"""Ao2D: attention over 2D slices (paper eq. 10-12, DESIGN.md §4.4) on top of SAMF.

Each prompt token attends over the slices (γ = softmax_S(Ft F2ᵀ / sqrt(d))); the attended
slice features are averaged over the real prompt tokens only, giving Ft2d, the fourth part
of the fused token.
"""

from __future__ import annotations

import torch

from fusion.base import masked_softmax, register_fusion
from fusion.samf import SAMF


@register_fusion("ao2d")
class Ao2D(SAMF):
    """SAMF plus the text-to-slices term: F_fused = W_fusion [f3; F2d3d; Ft3d; Ft2d]."""

    with_text_to_slices = True

    def _text_to_slices(
        self,
        f2: torch.Tensor,
        ft: torch.Tensor,
        s_mask: torch.Tensor,
        t_mask: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        gamma = masked_softmax(
            (ft @ f2.transpose(1, 2)) * scale, s_mask.unsqueeze(1), dim=-1
        )  # (B, T, S)  eq. 10
        per_token = gamma @ f2  # (B, T, d)
        # eq. 11: mean over the prompt tokens that exist (padding and answer excluded)
        w = t_mask.to(per_token.dtype).unsqueeze(-1)  # (B, T, 1)
        n = w.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
        return (per_token * w).sum(dim=1, keepdim=True) / n  # (B, 1, d)
