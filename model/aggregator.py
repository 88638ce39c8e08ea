"""The 3D aggregator (DESIGN.md §4.3, §4.6): slice embeddings -> volume embedding z3d.

Variants (one class, chosen by `AggregatorConfig.variant`):
- `ctscribe`: `[CLS; slices] + plane embedding + sinusoidal position` -> pre-norm transformer
  layers (global attention) -> final LayerNorm; z3d = volume_proj(CLS); the refined slice
  tokens are returned too.
- `scroll`: the same with CT-Scroll's global-local attention: layers 0, 2, 4, ... are local
  (a slice attends only to slices of its own plane within ±window//2 places in that plane's
  order; the CLS token attends to everything), layers 1, 3, ... are global.
- `compat`: the released VolumeAggregator: zero-initialised `cls_token`, `transformer_encoder`
  (nn.TransformerEncoder of post-norm ReLU layers, sequence-first), `volume_proj`; no plane or
  position information. Attribute names match the release's `model.mm_projector.*` keys. The
  release fuses the encoder's raw slice embeddings, so `refined` is the input unchanged.
  (nn.TransformerEncoderLayer's own dropout default is 0.1: the compat preset sets
  `dropout=0.1` for training parity; in eval mode dropout is inactive either way.)

Padding: `slice_mask` (B, S) True marks real slices; padded slices are never attended to
(each token may always attend to itself, so no softmax row is empty and nothing is NaN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ctscribe.errors import CtscribeError, ErrorCode
from fusion.base import sinusoid

VARIANTS = ("ctscribe", "scroll", "compat")


@dataclass(frozen=True)
class AggregatorConfig:
    """Shape of the 3D aggregator."""

    variant: str = "ctscribe"
    """ctscribe | scroll | compat (see the module docstring)."""
    d_slice: int = 768
    """Width of the slice embeddings it reads (and of its hidden states)."""
    d_volume: int = 256
    """Width of the volume embedding z3d it returns."""
    n_layers: int = 2
    """Number of transformer layers."""
    n_heads: int = 8
    """Attention heads per layer (must divide d_slice)."""
    d_ff: int = 1024
    """Hidden width of each layer's feed-forward block."""
    dropout: float = 0.0
    """Dropout probability inside the layers (training only)."""
    n_planes: int = 3
    """Number of slice planes (axial 0, coronal 1, sagittal 2) for the plane embedding."""
    window: int = 8
    """scroll: local attention span in slices; a slice sees ±window//2 neighbours of its plane."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AggregatorConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class Block(nn.Module):
    """One pre-norm transformer layer whose attention takes a (B, L, L) allowed-mask."""

    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d_ff)
        self.fc2 = nn.Linear(d_ff, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)  # 3 x (B, L, D)
        q, k, v = (
            t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v)
        )  # (B, H, L, Dh)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed.unsqueeze(1), dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, Dh)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))  # (B, L, D)
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.ln2(x))))))


class Aggregator(nn.Module):
    """forward(slices, plane_ids, positions, slice_mask) -> (z3d (B, d_volume), refined (B, S, d_slice))."""

    def __init__(self, cfg: AggregatorConfig):
        super().__init__()
        if cfg.variant not in VARIANTS:
            raise CtscribeError(
                ErrorCode.INVALID_REQUEST, f"unknown aggregator variant {cfg.variant!r}; known: {VARIANTS}"
            )
        if cfg.d_slice % cfg.n_heads:
            raise CtscribeError(
                ErrorCode.INVALID_REQUEST, f"n_heads {cfg.n_heads} does not divide d_slice {cfg.d_slice}"
            )
        self.cfg = cfg
        d = cfg.d_slice
        if cfg.variant == "compat":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
            layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.d_ff, dropout=cfg.dropout)
            # sequence-first, like the release: it keeps PyTorch on the same (non-fused) kernels
            self.transformer_encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        else:
            self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.plane_embed = nn.Embedding(cfg.n_planes, d)
            nn.init.normal_(self.plane_embed.weight, std=0.02)
            self.layers = nn.ModuleList(
                Block(d, cfg.n_heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.n_layers)
            )
            self.ln_f = nn.LayerNorm(d)
        self.volume_proj = nn.Linear(d, cfg.d_volume)

    def is_local_layer(self, i: int) -> bool:
        return self.cfg.variant == "scroll" and i % 2 == 0

    def forward(
        self,
        slices: torch.Tensor,
        plane_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        slice_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, _ = slices.shape
        dev = slices.device
        mask = (
            torch.ones(b, s, dtype=torch.bool, device=dev)
            if slice_mask is None
            else slice_mask.to(dev, torch.bool)
        )
        if self.cfg.variant == "compat":
            return self._forward_compat(slices, mask if slice_mask is not None else None)

        if plane_ids is None:
            plane_ids = torch.zeros(b, s, dtype=torch.long, device=dev)
        plane_ids = plane_ids.to(dev).long()
        if positions is None:  # slices in order, spread over [0, 1]
            positions = torch.linspace(0.0, 1.0, s, device=dev).expand(b, s)
        positions = positions.to(dev).float()

        x = slices + self.plane_embed(plane_ids) + sinusoid(positions, slices.shape[-1]).to(slices.dtype)
        x = torch.cat([self.cls_token.expand(b, 1, -1).to(x.dtype), x], dim=1)  # (B, 1 + S, D)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=dev), mask], dim=1)  # (B, L)
        eye = torch.eye(s + 1, dtype=torch.bool, device=dev)  # (L, L)
        global_allowed = valid.unsqueeze(1) | eye  # (B, L, L)
        local_allowed = (
            self._local_allowed(plane_ids, positions, mask, global_allowed)
            if self.cfg.variant == "scroll"
            else None
        )
        for i, layer in enumerate(self.layers):
            x = layer(x, local_allowed if self.is_local_layer(i) else global_allowed)
        x = self.ln_f(x)
        return self.volume_proj(x[:, 0]), x[:, 1:]

    def _local_allowed(
        self,
        plane_ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        global_allowed: torch.Tensor,
    ) -> torch.Tensor:
        """(B, L, L): slice i sees slice j iff same plane, both real, |rank_i - rank_j| <= window//2,
        where rank is the slice's place in its plane ordered by position. CLS sees everything."""
        b, s = plane_ids.shape
        idx = torch.arange(s, device=plane_ids.device)
        same = (
            (plane_ids.unsqueeze(2) == plane_ids.unsqueeze(1)) & mask.unsqueeze(1) & mask.unsqueeze(2)
        )  # (B, S, S)
        p_i, p_j = positions.unsqueeze(2), positions.unsqueeze(1)  # (B, S, 1), (B, 1, S)
        before = (p_j < p_i) | ((p_j == p_i) & (idx.view(1, 1, s) < idx.view(1, s, 1)))  # j ahead of i
        rank = (same & before).sum(dim=2)  # (B, S)
        near = (rank.unsqueeze(2) - rank.unsqueeze(1)).abs() <= self.cfg.window // 2  # (B, S, S)
        allowed = torch.zeros_like(global_allowed)
        allowed[:, 0] = global_allowed[:, 0]  # CLS query: global
        allowed[:, 1:, 1:] = same & near
        return allowed | torch.eye(s + 1, dtype=torch.bool, device=plane_ids.device)

    def _forward_compat(
        self, slices: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = slices.shape[0]
        tokens = torch.cat([self.cls_token.repeat(b, 1, 1), slices], dim=1)  # (B, 1 + S, E)
        tokens = tokens.permute(1, 0, 2)  # (1 + S, B, E): sequence-first as in the release
        pad = None
        if mask is not None and not bool(mask.all()):
            pad = ~torch.cat([torch.ones(b, 1, dtype=torch.bool, device=mask.device), mask], dim=1)  # (B, L)
        out = self.transformer_encoder(tokens, src_key_padding_mask=pad)  # (1 + S, B, E)
        return self.volume_proj(out[0]), slices


def build_aggregator(cfg: AggregatorConfig) -> Aggregator:
    return Aggregator(cfg)
