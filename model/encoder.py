"""The slice encoder (DESIGN.md §4.2): a DINO-layout ViT, one embedding per slice.

transformers' `ViTModel` with DINO's choices (patch 16, qkv bias, LayerNorm eps 1e-6, no
pooler). The embedding is the CLS token after the final LayerNorm, optionally concatenated
with the mean of the patch tokens. All slices of a batch go through ONE forward pass.

Weights: an HF-layout ViT (`facebook/dino-vitb16`, hub id or local dir) via
`ViTModel.from_pretrained`, or a raw DINO state dict (`pretrained_vision_encoder.pth`: keys
`cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,
mlp.fc1,mlp.fc2}.*`, `norm.*`) mapped onto our ViT by `dino_to_vit_state_dict` (the fused
qkv projection is split into q, k and v). Reading files is encoder_weights.py's job; this module
maps tensors that were already loaded.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from transformers import ViTConfig, ViTModel

from model.config import EncoderConfig
from model.errors import invalid

# Prefixes DINO training scripts put in front of the backbone's keys.
_DINO_PREFIXES = ("module.", "backbone.", "teacher.", "student.", "encoder.")
# Raw DINO keys that are not part of the backbone (projection head, masked-image token).
_DINO_IGNORED = re.compile(r"^(head\.|mask_token$|fc_norm\.|pre_logits\.)")


def vit_config(cfg: EncoderConfig) -> ViTConfig:
    return ViTConfig(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act="gelu",
        layer_norm_eps=cfg.layer_norm_eps,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        num_channels=3,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


class SliceEncoder(nn.Module):
    """(B, S, 3, H, W) slice images -> (B, S, d_slice) slice embeddings."""

    def __init__(self, cfg: EncoderConfig, vit: ViTModel | None = None):
        super().__init__()
        self.cfg = cfg
        self.vit = vit if vit is not None else ViTModel(vit_config(cfg), add_pooling_layer=False)
        if getattr(self.vit, "pooler", None) is not None:
            self.vit.pooler = None  # DINO has no pooler; keep the state dict free of unused weights

    @property
    def d_slice(self) -> int:
        return self.cfg.d_slice

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        b, s = slices.shape[:2]
        images = slices.reshape(b * s, *slices.shape[2:])  # (B*S, 3, H, W): one pass for all slices
        return self.embed_images(images).reshape(b, s, -1)  # (B, S, d_slice)

    def embed_images(self, images: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """(N, 3, H, W) -> (N, d_slice): the CLS token (+ the patch-token mean for `cls+mean`).

        `interpolate_pos_encoding` lets images of another size than the configured one through
        (DINO's local crops in stage 1)."""
        dtype = self.vit.embeddings.patch_embeddings.projection.weight.dtype
        hidden = self.vit(
            pixel_values=images.to(dtype), interpolate_pos_encoding=interpolate_pos_encoding
        ).last_hidden_state  # (N, 1 + P, D), final norm applied
        emb = hidden[:, 0]  # (N, D)
        if self.cfg.pool == "cls+mean":
            emb = torch.cat([emb, hidden[:, 1:].mean(dim=1)], dim=-1)  # (N, 2D)
        return emb


def build_encoder(cfg: EncoderConfig) -> SliceEncoder:
    """A randomly initialised encoder (weights, if any, are loaded by the caller)."""
    if cfg.pool not in ("cls", "cls+mean"):
        raise invalid(f"encoder pool must be 'cls' or 'cls+mean', got {cfg.pool!r}")
    if cfg.image_size % cfg.patch_size:
        raise invalid(f"encoder image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
    enc = SliceEncoder(cfg)
    if cfg.freeze:
        enc.requires_grad_(False)
    return enc


def _vit_key_names(vit: ViTModel) -> dict[str, str]:
    """Our ViT's parameter names for each logical part, whatever naming transformers uses."""
    keys = set(vit.state_dict())
    if "layers.0.attention.q_proj.weight" in keys:  # transformers >= 5
        return {
            "layer": "layers.{i}.",
            "q": "attention.q_proj",
            "k": "attention.k_proj",
            "v": "attention.v_proj",
            "proj": "attention.o_proj",
            "norm1": "layernorm_before",
            "norm2": "layernorm_after",
            "fc1": "mlp.fc1",
            "fc2": "mlp.fc2",
        }
    return {  # transformers 4.x
        "layer": "encoder.layer.{i}.",
        "q": "attention.attention.query",
        "k": "attention.attention.key",
        "v": "attention.attention.value",
        "proj": "attention.output.dense",
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "fc1": "intermediate.dense",
        "fc2": "output.dense",
    }


def dino_to_vit_state_dict(raw: dict[str, torch.Tensor], vit: ViTModel) -> dict[str, torch.Tensor]:
    """Map a raw DINO ViT state dict onto `vit`'s parameter names (qkv split into q, k, v).

    Unknown keys are an error (a wrong file should not load silently half-way); the DINO
    projection head and mask token are skipped.
    """
    names = _vit_key_names(vit)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        for prefix in _DINO_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if _DINO_IGNORED.match(key):
            continue
        if key == "cls_token":
            out["embeddings.cls_token"] = tensor
        elif key == "pos_embed":
            out["embeddings.position_embeddings"] = tensor
        elif key.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]] = tensor
        elif key.startswith("norm."):
            out["layernorm." + key.rsplit(".", 1)[1]] = tensor
        elif (m := re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", key)) is not None:
            layer = names["layer"].format(i=int(m.group(1)))
            part, kind = m.group(2), m.group(3)
            if part == "attn.qkv":
                q, k, v = tensor.chunk(3, dim=0)  # DINO stacks [q; k; v] along the output dim
                for name, piece in (("q", q), ("k", k), ("v", v)):
                    out[f"{layer}{names[name]}.{kind}"] = piece.clone()
            else:
                simple = {"attn.proj": "proj", "norm1": "norm1", "norm2": "norm2", "mlp.fc1": "fc1", "mlp.fc2": "fc2"}
                if part not in simple:
                    raise invalid(f"unexpected key in DINO state dict: {key!r}")
                out[f"{layer}{names[simple[part]]}.{kind}"] = tensor
        else:
            raise invalid(f"unexpected key in DINO state dict: {key!r}")
    return out


def load_dino_state_dict(enc: SliceEncoder, raw: dict[str, torch.Tensor]) -> None:
    """Load a raw DINO state dict into `enc`; every ViT parameter must be covered, shapes must match."""
    mapped = dino_to_vit_state_dict(raw, enc.vit)
    own = enc.vit.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise invalid(f"DINO weights do not fit the encoder: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise invalid(
                f"DINO weight {key} has shape {tuple(tensor.shape)}, the encoder expects {tuple(own[key].shape)}"
            )
    enc.vit.load_state_dict(mapped, strict=True)
