"""Pretrained slice-encoder weights: a raw DINO .pth/.pt/.safetensors file, or an HF ViT."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from model.config import EncoderConfig
from model.errors import invalid, not_ready


def load_encoder_weights(enc, cfg: EncoderConfig) -> None:
    """Load `cfg.pretrained` into the encoder: a raw DINO .pth/.pt/.safetensors file, or an HF ViT."""
    from model.encoder import load_dino_state_dict

    src = cfg.pretrained
    if not src:
        return
    path = Path(src)
    if path.suffix in (".pth", ".pt", ".safetensors"):
        if not path.is_file():
            raise not_ready(f"encoder weights {src!r} not found")
        raw = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
            raw = raw["state_dict"]
        load_dino_state_dict(enc, raw)
        return
    from transformers import ViTModel

    try:
        vit = ViTModel.from_pretrained(src, add_pooling_layer=False)
    except OSError as err:
        raise not_ready(f"cannot load encoder weights {src!r} (offline or missing?): {err}") from None
    missing, unexpected = enc.vit.load_state_dict(vit.state_dict(), strict=False)
    if missing or unexpected:
        raise invalid(f"encoder weights {src!r} do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
