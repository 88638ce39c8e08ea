"""SAMF / Ao2D exactly as the released reference code computes them (DESIGN.md §4.6).

Reproduced, not fixed: no 1/sqrt(d) scaling, the prompt is the embedding of the WHOLE input
sequence (the caller passes it; prompt_mask only drops padding, so with a single unpadded
sequence the result equals the reference's), SAMF does not project the prompt, the fused
vector is one token that the model repeats into every `<im_patch>` placeholder
(`extras["repeat"]`, 256 in the release), and slices get no tokens of their own.

Parameter names follow the reference repository (github.com/serag-ai/SAMF,
`src/vlm/src/model/multimodal_fuse/{samf,ao2d}.py`), so the release's `model.mm_fusion.*`
keys load with the prefix stripped and nothing renamed:
  samf-compat:  project_3d.{weight,bias}  (d_volume -> d_model)
                project_2d.{weight,bias}  (d_slice  -> d_model)
                fusion_layer.{weight,bias} (3 d_model -> d_model)
  ao2d-compat:  the same plus project_text.{weight,bias} (d_prompt -> d_model),
                fusion_layer is 4 d_model -> d_model.
The reference applies `fusion_layer` to 256 identical rows. The rows' results are equal to
each other, but a BLAS rounds a 1-row product differently from a 256-row one (measured on
CPU: up to 2e-6 apart at release sizes), so with `FusionConfig.compat_exact` (the default)
this module does the same 256-row product and keeps one row: bit for bit the release's
vector, at 256x the cost of that one layer. The operations before it (projections, bmm,
softmax, mean) are the release's own, in the same order, so they match bit for bit too
when no padding is masked.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion.base import Fusion, FusionConfig, FusionOutput, full_mask, masked_softmax, register_fusion

COMPAT_PLACEHOLDERS = 256
"""Number of `<im_patch>` placeholder positions the released model fills with the token."""


@register_fusion("samf-compat")
class SAMFCompat(Fusion):
    """z = fusion_layer([p3; αᵀP2; βᵀPt]), α, β unscaled softmaxes against p3."""

    project_prompt: bool = False

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        d = cfg.d_model
        self.project_3d = nn.Linear(cfg.d_volume, d)
        self.project_2d = nn.Linear(cfg.d_slice, d)
        if self.project_prompt:
            self.project_text = nn.Linear(cfg.d_prompt, d)
        elif cfg.d_prompt != d:
            raise ValueError(
                f"{cfg.name} uses the prompt embeddings unprojected: d_prompt must equal d_model"
            )
        self.fusion_layer = nn.Linear((4 if self.project_prompt else 3) * d, d)

    def n_tokens(self, n_slices: int) -> int:
        return 1

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
        p3 = self.project_3d(volume).unsqueeze(1)  # (B, 1, d)
        p2 = self.project_2d(slices)  # (B, S, d)
        pt = self.project_text(prompt) if self.project_prompt else prompt  # (B, T, d)

        alpha = masked_softmax((p2 @ p3.transpose(1, 2)).squeeze(-1), s_mask, dim=-1)  # (B, S)
        beta = masked_softmax((pt @ p3.transpose(1, 2)).squeeze(-1), t_mask, dim=-1)  # (B, T)
        parts = [p3, alpha.unsqueeze(1) @ p2, beta.unsqueeze(1) @ pt]  # 3 x (B, 1, d)
        if self.project_prompt:
            gamma = masked_softmax(pt @ p2.transpose(1, 2), s_mask.unsqueeze(1), dim=-1)  # (B, T, S)
            per_token = gamma @ p2  # (B, T, d)
            if bool(t_mask.all()):  # the reference's plain mean, bit for bit
                parts.append(per_token.mean(dim=1, keepdim=True))  # (B, 1, d)
            else:  # padding dropped from the mean
                w = t_mask.to(per_token.dtype).unsqueeze(-1)  # (B, T, 1)
                n = w.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
                parts.append((per_token * w).sum(dim=1, keepdim=True) / n)
        cat = torch.cat(parts, dim=-1)  # (B, 1, k d)
        if self.cfg.compat_exact:  # the release's 256-row product (contiguous, like .repeat)
            fused = self.fusion_layer(cat.repeat(1, COMPAT_PLACEHOLDERS, 1))[:, :1]  # (B, 1, d)
        else:
            fused = self.fusion_layer(cat)  # (B, 1, d)
        return FusionOutput(
            tokens=fused,
            slice_attention=alpha,
            extras={
                "repeat": COMPAT_PLACEHOLDERS,
                "token_mask": torch.ones(fused.shape[:2], dtype=torch.bool, device=fused.device),
            },
        )


@register_fusion("ao2d-compat")
class Ao2DCompat(SAMFCompat):
    """Adds project_text and the text-to-slices mean: fusion_layer([p3; αᵀP2; βᵀPt; mean_T γP2])."""

    project_prompt = True
