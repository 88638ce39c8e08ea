"""The 3D aggregator: shapes, padding, CT-Scroll locality, and the compat layout."""

from __future__ import annotations

import math

import pytest
import torch

from ctscribe.errors import CtscribeError
from model.aggregator import Aggregator, AggregatorConfig, build_aggregator

B, S = 2, 7


def tiny(variant: str, **kw) -> AggregatorConfig:
    base = dict(variant=variant, d_slice=16, d_volume=8, n_layers=2, n_heads=2, d_ff=32)
    return AggregatorConfig(**{**base, **kw})


def batch(cfg: AggregatorConfig, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, -3:] = False
    return {
        "slices": torch.randn(B, S, cfg.d_slice, generator=g),
        "plane_ids": torch.tensor([[0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2, 0]]),
        "positions": torch.rand(B, S, generator=g),
        "slice_mask": mask,
    }


@pytest.mark.parametrize("variant", ["ctscribe", "scroll", "compat"])
def test_shapes_and_finiteness(variant):
    cfg = tiny(variant)
    agg = build_aggregator(cfg).eval()
    z3d, refined = agg(**batch(cfg))
    assert isinstance(agg, Aggregator)
    assert z3d.shape == (B, cfg.d_volume) and refined.shape == (B, S, cfg.d_slice)
    assert torch.isfinite(z3d).all() and torch.isfinite(refined).all()


@pytest.mark.parametrize("variant", ["ctscribe", "scroll", "compat"])
def test_padded_slices_have_no_effect(variant):
    cfg = tiny(variant)
    agg = build_aggregator(cfg).eval()
    x = batch(cfg)
    noisy = torch.where(x["slice_mask"].unsqueeze(-1), x["slices"], 50 * torch.randn_like(x["slices"]))
    z_a, r_a = agg(**x)
    z_b, r_b = agg(**dict(x, slices=noisy))
    torch.testing.assert_close(z_a, z_b, atol=1e-5, rtol=1e-5)
    m = x["slice_mask"]
    torch.testing.assert_close(r_a[m], r_b[m], atol=1e-5, rtol=1e-5)
    # and the padded batch item equals the same volume given alone without padding
    alone_z, _ = agg(x["slices"][1:, :4], x["plane_ids"][1:, :4], x["positions"][1:, :4])
    torch.testing.assert_close(z_a[1:], alone_z, atol=1e-5, rtol=1e-5)


def test_a_fully_padded_volume_gives_no_nan():
    cfg = tiny("scroll")
    x = batch(cfg)
    x["slice_mask"][1] = False
    z3d, refined = build_aggregator(cfg).eval()(**x)
    assert torch.isfinite(z3d).all() and torch.isfinite(refined).all()


def test_plane_and_position_reach_the_ctscribe_output():
    cfg = tiny("ctscribe")
    agg = build_aggregator(cfg).eval()
    x = batch(cfg)
    z, _ = agg(**x)
    assert (z - agg(**dict(x, plane_ids=(x["plane_ids"] + 1) % 3))[0]).abs().max() > 1e-3
    assert (z - agg(**dict(x, positions=x["positions"].flip(1)))[0]).abs().max() > 1e-3


def plane_stack(cfg: AggregatorConfig, n: int = 10) -> dict:
    """One volume: n axial slices in order, then 3 coronal slices."""
    g = torch.Generator().manual_seed(1)
    return {
        "slices": torch.randn(1, n + 3, cfg.d_slice, generator=g),
        "plane_ids": torch.tensor([[0] * n + [1] * 3]),
        "positions": torch.cat([torch.linspace(0, 1, n), torch.tensor([0.1, 0.5, 0.9])])[None],
    }


def test_scroll_local_layer_is_local():
    """One local layer, window 4 (±2 places in the plane): axial slice 9 reaches axial
    slices 7 and 8 only; slices 0-6 and every coronal slice are untouched; CLS sees it."""
    cfg = tiny("scroll", n_layers=1, window=4)
    agg = build_aggregator(cfg).eval()
    x = plane_stack(cfg)
    z_a, r_a = agg(**x)
    changed = x["slices"].clone()
    changed[0, 9] = torch.randn(cfg.d_slice)  # (a constant shift would vanish in LayerNorm)
    z_b, r_b = agg(**dict(x, slices=changed))
    moved = (r_a - r_b).abs().amax(dim=-1)[0] > 1e-6  # (S,)
    assert moved.tolist() == [False] * 7 + [True] * 3 + [False] * 3
    assert (z_a - z_b).abs().max() > 1e-3  # the CLS token attends globally


def test_scroll_local_window_follows_position_not_input_order():
    cfg = tiny("scroll", n_layers=1, window=2)
    agg = build_aggregator(cfg).eval()
    x = plane_stack(cfg, n=6)
    order = torch.tensor([3, 0, 5, 1, 4, 2, 6, 7, 8])  # shuffle the axial slices
    shuffled = {k: v[:, order] for k, v in x.items()}
    _, r = agg(**x)
    _, r_shuffled = agg(**shuffled)
    torch.testing.assert_close(r_shuffled, r[:, order], atol=1e-5, rtol=1e-5)


def test_scroll_global_layer_spreads_far_slices():
    cfg = tiny("scroll", n_layers=2, window=2)
    agg = build_aggregator(cfg).eval()
    x = plane_stack(cfg)
    changed = x["slices"].clone()
    changed[0, 9] = torch.randn(cfg.d_slice)  # (a constant shift would vanish in LayerNorm)
    _, r_a = agg(**x)
    _, r_b = agg(**dict(x, slices=changed))
    assert (r_a[0, 0] - r_b[0, 0]).abs().max() > 1e-3


def test_ctscribe_attention_is_global():
    cfg = tiny("ctscribe", n_layers=1)
    agg = build_aggregator(cfg).eval()
    x = plane_stack(cfg)
    changed = x["slices"].clone()
    changed[0, 9] = torch.randn(cfg.d_slice)  # (a constant shift would vanish in LayerNorm)
    assert (agg(**x)[1][0, 0] - agg(**dict(x, slices=changed))[1][0, 0]).abs().max() > 1e-3


def compat_keys(n_layers: int) -> set[str]:
    # the release's `model.mm_projector.*` keys, prefix stripped
    per_layer = [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
        "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
    ]  # fmt: skip
    keys = {"cls_token", "volume_proj.weight", "volume_proj.bias"}
    return keys | {f"transformer_encoder.layers.{i}.{k}" for i in range(n_layers) for k in per_layer}


def test_compat_layout_matches_the_release():
    cfg = AggregatorConfig(
        variant="compat", d_slice=768, d_volume=256, n_layers=2, n_heads=8, d_ff=1024, dropout=0.1
    )
    agg = build_aggregator(cfg)
    sd = agg.state_dict()
    assert set(sd) == compat_keys(2)
    assert sd["cls_token"].shape == (1, 1, 768) and not sd["cls_token"].any()  # zero-initialised
    assert sd["transformer_encoder.layers.0.linear1.weight"].shape == (1024, 768)
    assert sd["volume_proj.weight"].shape == (256, 768)
    layer = agg.transformer_encoder.layers[0]
    assert layer.self_attn.num_heads == 8 and not layer.norm_first and layer.dropout.p == 0.1


def reference_post_norm_layer(layer, x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """x (L, d) for one volume: x = LN1(x + MHA(x)); x = LN2(x + W2 relu(W1 x))."""
    L, d = x.shape
    dh = d // n_heads
    q, k, v = (x @ layer.self_attn.in_proj_weight.T + layer.self_attn.in_proj_bias).split(d, dim=-1)
    heads = []
    for h in range(n_heads):
        sl = slice(h * dh, (h + 1) * dh)
        att = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(dh), dim=-1)
        heads.append(att @ v[:, sl])
    a = torch.cat(heads, dim=-1) @ layer.self_attn.out_proj.weight.T + layer.self_attn.out_proj.bias
    x = torch.nn.functional.layer_norm(x + a, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    f = (
        torch.relu(x @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T
        + layer.linear2.bias
    )
    return torch.nn.functional.layer_norm(x + f, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)


def test_compat_matches_a_step_by_step_post_norm_reference():
    torch.manual_seed(0)
    cfg = tiny("compat", n_heads=4)
    agg = build_aggregator(cfg).eval()
    with torch.no_grad():
        agg.cls_token.normal_()  # a trained CLS is not zero: make it count
        x = torch.randn(B, S, cfg.d_slice)
        z3d, refined = agg(x)
        for b in range(B):
            h = torch.cat([agg.cls_token[0], x[b]])  # (1 + S, d); no plane or position code
            for layer in agg.transformer_encoder.layers:
                h = reference_post_norm_layer(layer, h.double().float(), cfg.n_heads)
            torch.testing.assert_close(
                z3d[b], h[0] @ agg.volume_proj.weight.T + agg.volume_proj.bias, atol=1e-5, rtol=1e-5
            )
    assert refined is x  # the release fuses the encoder's own slice embeddings
    # no plane or position information in the release's aggregator
    p = torch.randint(0, 3, (B, S))
    torch.testing.assert_close(agg(x, p, torch.rand(B, S))[0], z3d)


def test_bad_configs_are_ctscribe_errors():
    with pytest.raises(CtscribeError):
        build_aggregator(tiny("nope"))
    with pytest.raises(CtscribeError):
        build_aggregator(tiny("ctscribe", n_heads=3))


def test_config_round_trips_through_a_dict():
    cfg = tiny("scroll", window=4)
    assert AggregatorConfig.from_dict(cfg.to_dict()) == cfg


def test_gradients_reach_every_parameter():
    for variant in ("ctscribe", "scroll"):
        cfg = tiny(variant)
        agg = build_aggregator(cfg).train()
        z3d, refined = agg(**batch(cfg))
        (z3d.square().sum() + refined.square().sum()).backward()
        for name, p in agg.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (variant, name)
