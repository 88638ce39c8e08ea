"""Slice encoder: shapes, one forward for all slices, and raw-DINO key-mapping parity."""

import math

import pytest
import torch
import torch.nn.functional as F

from model.config import EncoderConfig
from model.encoder import build_encoder, load_dino_state_dict
from model.errors import ModelError

CFG = EncoderConfig(image_size=32, patch_size=8, hidden_size=32, n_layers=2, n_heads=4, intermediate_size=64)


def random_dino_state_dict(cfg: EncoderConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A raw DINO ViT state dict (timm/DINO key layout) with random values."""
    g = torch.Generator().manual_seed(seed)
    d, n_patches = cfg.hidden_size, (cfg.image_size // cfg.patch_size) ** 2

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "cls_token": r(1, 1, d),
        "pos_embed": r(1, n_patches + 1, d),
        "patch_embed.proj.weight": r(d, 3, cfg.patch_size, cfg.patch_size, scale=0.05),
        "patch_embed.proj.bias": r(d),
        "norm.weight": 1 + r(d),
        "norm.bias": r(d),
    }
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        sd |= {
            p + "norm1.weight": 1 + r(d), p + "norm1.bias": r(d),
            p + "attn.qkv.weight": r(3 * d, d), p + "attn.qkv.bias": r(3 * d),
            p + "attn.proj.weight": r(d, d), p + "attn.proj.bias": r(d),
            p + "norm2.weight": 1 + r(d), p + "norm2.bias": r(d),
            p + "mlp.fc1.weight": r(cfg.intermediate_size, d), p + "mlp.fc1.bias": r(cfg.intermediate_size),
            p + "mlp.fc2.weight": r(d, cfg.intermediate_size), p + "mlp.fc2.bias": r(d),
        }
    return sd


def reference_dino_cls(sd: dict, images: torch.Tensor, cfg: EncoderConfig) -> torch.Tensor:
    """DINO's ViT forward written out step by step from the raw weights (no transformers)."""
    eps, h, d = cfg.layer_norm_eps, cfg.n_heads, cfg.hidden_size
    x = F.conv2d(images, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size)
    x = x.flatten(2).transpose(1, 2)  # (N, P, d)
    x = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + sd["pos_embed"]
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        y = F.layer_norm(x, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        qkv = y @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]  # (N, L, 3d)
        n, length = qkv.shape[:2]
        q, k, v = qkv.reshape(n, length, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (N, h, L, d/h)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, length, d)
        x = x + y @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        y = F.layer_norm(x, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        y = F.gelu(y @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        x = x + y @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    x = F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], eps)
    return x[:, 0]


def test_raw_dino_weights_give_the_reference_cls():
    sd = random_dino_state_dict(CFG)
    enc = build_encoder(CFG).eval()
    load_dino_state_dict(enc, {"module.backbone." + k if k == "cls_token" else k: v for k, v in sd.items()}
                         | {"head.mlp.0.weight": torch.zeros(4, 4)})  # prefixes stripped, DINO head skipped
    images = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # (B, S, 3, H, W)
    with torch.no_grad():
        ours = enc(images)  # (B, S, d)
        ref = reference_dino_cls(sd, images.reshape(6, 3, 32, 32), CFG).reshape(2, 3, -1)
    assert ours.shape == (2, 3, CFG.hidden_size)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_cls_plus_mean_pooling_doubles_the_width():
    cfg = EncoderConfig(**{**CFG.__dict__, "pool": "cls+mean"})
    enc = build_encoder(cfg).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 2, 3, 32, 32))
    assert out.shape == (1, 2, 2 * CFG.hidden_size)
    hidden = enc.vit(pixel_values=torch.randn(1, 3, 32, 32)).last_hidden_state
    assert hidden.shape[1] == 1 + 16


def test_all_slices_go_through_one_forward():
    enc = build_encoder(CFG).eval()
    calls = []
    enc.vit.register_forward_hook(lambda m, i, o: calls.append(1))
    with torch.no_grad():
        enc(torch.randn(3, 5, 3, 32, 32))
    assert len(calls) == 1


def test_wrong_dino_weights_are_refused():
    sd = random_dino_state_dict(CFG)
    enc = build_encoder(CFG)
    with pytest.raises(ModelError):
        load_dino_state_dict(enc, {**sd, "blocks.0.attn.unknown.weight": torch.zeros(1)})
    del sd["norm.bias"]
    with pytest.raises(ModelError):
        load_dino_state_dict(enc, sd)
    bigger = random_dino_state_dict(EncoderConfig(**{**CFG.__dict__, "hidden_size": 64}))
    with pytest.raises(ModelError):
        load_dino_state_dict(enc, bigger)
