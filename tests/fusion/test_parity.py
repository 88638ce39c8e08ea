"""Parity: each fusion module vs an independent step-by-step computation of its equations.

The references below work one sample at a time in float64, keep only the real slices and
prompt tokens by boolean indexing (no -inf masking), and spell softmax and the linear maps
out by hand, so they share no code path with the modules.
"""

from __future__ import annotations

import math

import pytest
import torch

from fusion import build_fusion
from fusion.compat import COMPAT_PLACEHOLDERS
from tests.fusion.conftest import B, tiny_config


def lin(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return x @ layer.weight.double().T + layer.bias.double()


def softmax(v: torch.Tensor) -> torch.Tensor:
    e = torch.exp(v - v.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def sinusoid_ref(p: float, dim: int) -> torch.Tensor:
    # Vaswani et al. code of 1000 * p: sin in the first half, cos in the second
    half = dim // 2
    ang = [1000.0 * p * 10000.0 ** (-k / half) for k in range(half)]
    return torch.tensor([math.sin(a) for a in ang] + [math.cos(a) for a in ang], dtype=torch.float64)


def reference_samf(fusion, x: dict, b: int, with_ao2d: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper eq. 3-12 for sample b: (tokens (N, d_model), alpha over ALL slices (S,))."""
    d = fusion.cfg.d_proj
    sm, tm = x["slice_mask"][b], x["prompt_mask"][b]
    z2d = x["slices"][b].double()
    f2_all = lin(fusion.w2d, z2d)  # eq. 3, every slice (padded ones get tokens too)
    f2 = f2_all[sm]
    f3 = lin(fusion.w3d, x["volume"][b].double())  # eq. 4
    ft = lin(fusion.wt, x["prompt"][b].double()[tm])  # eq. 5, real prompt tokens only
    alpha = softmax(f2 @ f3 / math.sqrt(d))  # eq. 6
    f2d3d = alpha @ f2  # eq. 7
    beta = softmax(ft @ f3 / math.sqrt(d))  # eq. 8
    ft3d = beta @ ft  # eq. 9
    parts = [f3, f2d3d, ft3d]
    if with_ao2d:
        gamma = torch.stack([softmax(ft[t] @ f2.T / math.sqrt(d)) for t in range(ft.shape[0])])  # eq. 10
        parts.append((gamma @ f2).mean(dim=0))  # eq. 11
    fused = lin(fusion.w_fusion, torch.cat(parts))  # eq. 12
    tok = fusion.slice_tokenizer
    per_slice = torch.stack(
        [
            lin(
                tok.w_slice,
                f2_all[s]
                + tok.plane_embed.weight.double()[x["plane_ids"][b, s]]
                + sinusoid_ref(float(x["positions"][b, s]), d),
            )
            for s in range(z2d.shape[0])
        ]
    )
    alpha_full = torch.zeros(z2d.shape[0], dtype=torch.float64)
    alpha_full[sm] = alpha
    return torch.cat([fused[None], per_slice]), alpha_full


@pytest.mark.parametrize("name", ["samf", "ao2d"])
def test_samf_and_ao2d_match_the_paper_equations(name, inputs):
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).eval()
    x = inputs(cfg, seed=3)
    with torch.no_grad():
        out = fusion(**x)
        for b in range(B):
            tokens, alpha = reference_samf(fusion, x, b, with_ao2d=name == "ao2d")
            torch.testing.assert_close(out.tokens[b].double(), tokens, atol=1e-6, rtol=0)
            torch.testing.assert_close(out.slice_attention[b].double(), alpha, atol=1e-6, rtol=0)


def reference_compat(fusion, x: dict, b: int, with_ao2d: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """DESIGN.md §4.6 for sample b: unscaled softmaxes, SAMF uses the raw embeddings, the
    fusion layer applied to 256 repeated rows as the release does."""
    sm, tm = x["slice_mask"][b], x["prompt_mask"][b]
    p3 = lin(fusion.project_3d, x["volume"][b].double())
    p2 = lin(fusion.project_2d, x["slices"][b].double()[sm])
    e = x["prompt"][b].double()[tm]
    pt = lin(fusion.project_text, e) if with_ao2d else e
    alpha = softmax(p2 @ p3)
    beta = softmax(pt @ p3)
    parts = [p3, alpha @ p2, beta @ pt]
    if with_ao2d:
        gamma = softmax(pt @ p2.T)  # (T, S): over slices for each token
        parts.append((gamma @ p2).mean(dim=0))
    rows = torch.cat(parts)[None].repeat(COMPAT_PLACEHOLDERS, 1)  # (256, k * d)
    z = lin(fusion.fusion_layer, rows)  # (256, d)
    assert torch.equal(z, z[:1].expand_as(z))  # every placeholder gets the same vector
    alpha_full = torch.zeros(sm.shape[0], dtype=torch.float64)
    alpha_full[sm] = alpha
    return z[:1], alpha_full


@pytest.mark.parametrize("name", ["samf-compat", "ao2d-compat"])
def test_compat_fusions_match_the_release_computation(name, inputs):
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).eval()
    x = inputs(cfg, seed=4)
    with torch.no_grad():
        out = fusion(**x)
        for b in range(B):
            z, alpha = reference_compat(fusion, x, b, with_ao2d=name == "ao2d-compat")
            torch.testing.assert_close(out.tokens[b].double(), z, atol=1e-6, rtol=0)
            torch.testing.assert_close(out.slice_attention[b].double(), alpha, atol=1e-6, rtol=0)


def test_compat_fusion_is_unscaled_where_samf_is_scaled(inputs):
    """Same weights, same inputs: samf-compat's α is softmax(P2·p3), samf's is that / sqrt(d)."""
    samf, compat = build_fusion(tiny_config("samf")), build_fusion(tiny_config("samf-compat"))
    x = inputs(tiny_config("samf"))
    with torch.no_grad():
        f2, f3 = samf.w2d(x["slices"]), samf.w3d(x["volume"])
        scores = torch.einsum("bsd,bd->bs", f2, f3).masked_fill(~x["slice_mask"], float("-inf"))
        alpha = samf(**x).slice_attention
    torch.testing.assert_close(alpha, torch.softmax(scores / math.sqrt(samf.cfg.d_proj), dim=1))
    assert compat.cfg.d_proj == samf.cfg.d_proj  # compat ignores d_proj: its width is d_model
    assert compat.project_2d.out_features == compat.cfg.d_model


# Keys of the release's `model.mm_fusion.*` tensors (github.com/serag-ai/SAMF,
# multimodal_fuse/samf.py and ao2d.py), with the prefix stripped, and their shapes.
RELEASE_KEYS = {
    "samf-compat": {
        "project_3d.weight": (3072, 256),
        "project_3d.bias": (3072,),
        "project_2d.weight": (3072, 768),
        "project_2d.bias": (3072,),
        "fusion_layer.weight": (3072, 9216),
        "fusion_layer.bias": (3072,),
    },
}
RELEASE_KEYS["ao2d-compat"] = {
    **RELEASE_KEYS["samf-compat"],
    "project_text.weight": (3072, 3072),
    "project_text.bias": (3072,),
    "fusion_layer.weight": (3072, 12288),
}


@pytest.mark.parametrize("name", ["samf-compat", "ao2d-compat"])
def test_compat_parameter_names_and_shapes_match_the_release(name):
    from fusion import FusionConfig

    cfg = FusionConfig(name=name, d_slice=768, d_volume=256, d_prompt=3072, d_model=3072)
    with torch.device("meta"):  # shapes only: no 150 MB of random weights
        fusion = build_fusion(cfg)
    got = {k: tuple(v.shape) for k, v in fusion.state_dict().items()}
    assert got == RELEASE_KEYS[name]


def release_order_fp32(fusion, x: dict, with_ao2d: bool) -> torch.Tensor:
    """§4.6 in float32 in the release's order of operations: project, bmm, softmax over
    dim 1, weighted bmm, repeat every part into 256 rows, concatenate, fusion layer."""
    p3 = fusion.project_3d(x["volume"]).unsqueeze(1)  # (B, 1, d)
    p2 = fusion.project_2d(x["slices"])  # (B, S, d)
    pt = fusion.project_text(x["prompt"]) if with_ao2d else x["prompt"]  # (B, T, d)
    a = torch.softmax(torch.bmm(p2, p3.transpose(1, 2)).squeeze(-1), dim=1)
    b = torch.softmax(torch.bmm(pt, p3.transpose(1, 2)).squeeze(-1), dim=1)
    parts = [p3, torch.bmm(a.unsqueeze(1), p2), torch.bmm(b.unsqueeze(1), pt)]
    if with_ao2d:
        g = torch.softmax(torch.bmm(pt, p2.transpose(1, 2)), dim=2)
        parts.append(torch.bmm(g, p2).mean(dim=1, keepdim=True))
    rows = torch.cat([p.repeat(1, COMPAT_PLACEHOLDERS, 1) for p in parts], dim=-1)  # (B, 256, k d)
    return fusion.fusion_layer(rows)  # (B, 256, d)


@pytest.mark.parametrize("name", ["samf-compat", "ao2d-compat"])
def test_compat_fusions_are_bit_exact_without_padding(name, inputs):
    """With nothing masked (one unpadded sequence, as the release runs), every one of the
    256 release rows equals the module's token bit for bit."""
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).eval()
    x = inputs(cfg, seed=5)
    x["slice_mask"] = torch.ones_like(x["slice_mask"])
    x["prompt_mask"] = torch.ones_like(x["prompt_mask"])
    with torch.no_grad():
        rows = release_order_fp32(fusion, x, with_ao2d=name == "ao2d-compat")
        token = fusion(**x).tokens  # (B, 1, d)
    assert torch.equal(rows, token.expand_as(rows))
