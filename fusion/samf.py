"""SAMF: slice-attentive multimodal fusion (paper eq. 3-9, DESIGN.md §4.4), with the reference
code's defects fixed: attention is scaled by 1/sqrt(d_proj), the prompt is projected and
only real prompt tokens are attended (never the answer, never padding), padded slices get
no attention, and the slices also reach the decoder as tokens of their own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fusion.base import (
    Fusion,
    FusionConfig,
    FusionOutput,
    SliceTokenizer,
    full_mask,
    masked_softmax,
    register_fusion,
)


@register_fusion("samf")
class SAMF(Fusion):
    """F_fused = W_fusion [f3; αᵀF2; βᵀFt] followed by one token per slice."""

    # Ao2D sets this to add the text-to-slices term (eq. 10-11).
    with_text_to_slices: bool = False

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        d = cfg.d_proj
        self.w2d = nn.Linear(cfg.d_slice, d)
        self.w3d = nn.Linear(cfg.d_volume, d)
        self.wt = nn.Linear(cfg.d_prompt, d)
        n_parts = 4 if self.with_text_to_slices else 3
        self.w_fusion = nn.Linear(n_parts * d, cfg.d_model)
        self.slice_tokenizer = SliceTokenizer(d, cfg.d_model, cfg.n_planes) if cfg.slice_tokens else None

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
        t_mask = full_mask(prompt, prompt_mask)  # (B, T)
        scale = 1.0 / math.sqrt(self.cfg.d_proj)

        f2 = self.w2d(slices)  # (B, S, d)      eq. 3
        f3 = self.w3d(volume).unsqueeze(1)  # (B, 1, d)   eq. 4
        ft = self.wt(prompt)  # (B, T, d)       eq. 5

        # eq. 6-7: which slices agree with the volume
        alpha = masked_softmax((f2 @ f3.transpose(1, 2)).squeeze(-1) * scale, s_mask, dim=-1)  # (B, S)
        f2d3d = alpha.unsqueeze(1) @ f2  # (B, 1, d)
        # eq. 8-9: which prompt tokens agree with the volume
        beta = masked_softmax((ft @ f3.transpose(1, 2)).squeeze(-1) * scale, t_mask, dim=-1)  # (B, T)
        ft3d = beta.unsqueeze(1) @ ft  # (B, 1, d)
        parts = [f3, f2d3d, ft3d]
        if self.with_text_to_slices:
            parts.append(self._text_to_slices(f2, ft, s_mask, t_mask, scale))
        fused = self.w_fusion(torch.cat(parts, dim=-1))  # (B, 1, d_model)  eq. 12

        token_mask = torch.ones(fused.shape[:2], dtype=torch.bool, device=fused.device)
        if self.slice_tokenizer is not None:
            per_slice = self.slice_tokenizer(f2, plane_ids, positions)  # (B, S, d_model)
            tokens = torch.cat([fused, per_slice], dim=1)  # (B, 1 + S, d_model)
            token_mask = torch.cat([token_mask, s_mask], dim=1)
        else:
            tokens = fused
        return FusionOutput(tokens=tokens, slice_attention=alpha, extras={"token_mask": token_mask})

    def _text_to_slices(
        self,
        f2: torch.Tensor,
        ft: torch.Tensor,
        s_mask: torch.Tensor,
        t_mask: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        raise NotImplementedError  # only Ao2D has this term
