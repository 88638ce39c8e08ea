"""The fusion contract (DESIGN.md §4.4): config, output, interface, registry, shared pieces.

A fusion turns the volume embedding z3d, the slice embeddings z2d and the prompt's token
embeddings into the visual tokens the decoder reads. Every fusion (SAMF, Ao2D, the identity
baseline and the two `-compat` reproductions of the released code) has the same `forward`
signature and returns a `FusionOutput`, so the model never special-cases a fusion by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from ctscribe.errors import CtscribeError, ErrorCode


@dataclass(frozen=True)
class FusionConfig:
    """Sizes and choice of one fusion module."""

    name: str = "samf"
    """Registered fusion: samf | ao2d | identity | samf-compat | ao2d-compat."""
    d_slice: int = 768
    """Width of one slice embedding z2d (the slice encoder's / aggregator's output)."""
    d_volume: int = 256
    """Width of the volume embedding z3d (the aggregator's output)."""
    d_prompt: int = 3072
    """Width of the decoder's input token embeddings (E_prompt)."""
    d_model: int = 3072
    """Decoder hidden size: the width of every visual token handed to the decoder."""
    d_proj: int = 512
    """Common width all inputs are projected to before attention (eq. 3-5); the compat
    fusions ignore it and project to d_model, as the released code does."""
    slice_tokens: bool = True
    """Emit one token per slice after the fused token (ctscribe fusions only)."""
    n_planes: int = 3
    """Number of slice planes (axial 0, coronal 1, sagittal 2) for the plane embedding."""
    compat_exact: bool = True
    """Compat fusions only: apply the fusion layer to all 256 repeated rows as the release
    does, so the result is bit-identical (a BLAS rounds a 1-row product differently); costs
    256x that one layer's compute (~19 GFLOP at release sizes). False: compute it once."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FusionConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class FusionOutput:
    """What a fusion hands back to the model."""

    tokens: torch.Tensor
    """(B, N, d_model) visual tokens, N = fusion.n_tokens(S)."""
    slice_attention: torch.Tensor
    """(B, S) α: how much each slice contributed (sums to 1 over valid slices; 0 on padding).
    The most attended slices are the report's key-slice evidence."""
    extras: dict = field(default_factory=dict)
    """Optional extras. `token_mask` (B, N) bool: False for tokens of padded slices.
    `repeat` (int): the compat fusions ask the model to repeat their single token into that
    many placeholder positions (the released code fills all 256 `<im_patch>` slots)."""


class Fusion(nn.Module):
    """Interface every registered fusion implements."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.cfg = cfg

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
        """volume (B, d_volume), slices (B, S, d_slice), prompt (B, T, d_prompt) token
        embeddings, prompt_mask (B, T) bool (True = a prompt token the fusion may read; never
        the answer, never padding), slice_mask (B, S) bool (True = real slice, None = all),
        plane_ids (B, S) long, positions (B, S) float in [0, 1]."""
        raise NotImplementedError

    def n_tokens(self, n_slices: int) -> int:
        """Number of visual tokens for a volume of `n_slices` slices."""
        raise NotImplementedError


FUSIONS: dict[str, type[Fusion]] = {}


def register_fusion(name: str) -> Callable[[type[Fusion]], type[Fusion]]:
    def deco(cls: type[Fusion]) -> type[Fusion]:
        FUSIONS[name] = cls
        cls.registered_name = name
        return cls

    return deco


def build_fusion(cfg: FusionConfig) -> Fusion:
    try:
        cls = FUSIONS[cfg.name]
    except KeyError:
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST, f"unknown fusion {cfg.name!r}; known: {sorted(FUSIONS)}"
        ) from None
    return cls(cfg)


# ---- shared pieces ---------------------------------------------------------------------


def full_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, S) bool mask; all True where none was given."""
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return mask.to(device=x.device, dtype=torch.bool)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over `dim` restricted to mask==True; a row with nothing valid gets all zeros
    (not NaN), so an empty prompt or an all-padding volume cannot poison the batch."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return torch.where(mask.any(dim=dim, keepdim=True), weights, torch.zeros_like(weights))


def sinusoid(positions: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """(..., dim) sinusoidal code of normalised positions in [0, 1] (Vaswani et al.),
    positions multiplied by `scale` so that neighbouring slices get distinct codes."""
    half = dim // 2
    # float64 angles: in float32 an angle near 1000 rad is off by ~1e-4, and so is its sine
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float64) / max(half, 1)
    )
    angles = positions.double().unsqueeze(-1) * scale * freqs  # (..., half)
    code = torch.cat([angles.sin(), angles.cos()], dim=-1).float()
    if code.shape[-1] < dim:  # odd width: pad the last channel
        code = torch.nn.functional.pad(code, (0, dim - code.shape[-1]))
    return code


class SliceTokenizer(nn.Module):
    """One decoder token per slice: W_slice (x + plane embedding + sinusoidal position)."""

    def __init__(self, d_in: int, d_model: int, n_planes: int):
        super().__init__()
        self.plane_embed = nn.Embedding(n_planes, d_in)
        nn.init.normal_(self.plane_embed.weight, std=0.02)
        self.w_slice = nn.Linear(d_in, d_model)

    def forward(
        self, x: torch.Tensor, plane_ids: torch.Tensor | None, positions: torch.Tensor | None
    ) -> torch.Tensor:
        if plane_ids is not None:
            x = x + self.plane_embed(plane_ids.to(x.device).long())
        if positions is not None:
            x = x + sinusoid(positions.to(x.device), x.shape[-1]).to(x.dtype)
        return self.w_slice(x)  # (B, S, d_model)
