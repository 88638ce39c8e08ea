"""Invariants every registered fusion must keep (run over the whole FUSIONS registry)."""

from __future__ import annotations

import pytest
import torch

from ctscribe.errors import CtscribeError, ErrorCode
from fusion import FUSIONS, Fusion, FusionConfig, FusionOutput, build_fusion
from tests.fusion.conftest import B, S, T, tiny_config

ALL = sorted(FUSIONS)


def test_registry_holds_the_designed_fusions():
    assert set(FUSIONS) == {"samf", "ao2d", "identity", "samf-compat", "ao2d-compat"}
    for name, cls in FUSIONS.items():
        assert issubclass(cls, Fusion)
        assert isinstance(build_fusion(tiny_config(name)), cls)


def test_unknown_fusion_is_a_ctscribe_error():
    with pytest.raises(CtscribeError) as err:
        build_fusion(FusionConfig(name="nope"))
    assert err.value.code == ErrorCode.INVALID_REQUEST


def test_config_round_trips_through_a_dict():
    cfg = tiny_config("ao2d", slice_tokens=False)
    assert FusionConfig.from_dict({**cfg.to_dict(), "unknown_future_key": 1}) == cfg


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("slice_tokens", [True, False])
def test_output_shapes(name, slice_tokens, inputs):
    cfg = tiny_config(name, slice_tokens)
    fusion = build_fusion(cfg).eval()
    out = fusion(**inputs(cfg))
    assert isinstance(out, FusionOutput)
    assert out.tokens.shape == (B, fusion.n_tokens(S), cfg.d_model)
    assert out.slice_attention.shape == (B, S)
    assert out.extras["token_mask"].shape == out.tokens.shape[:2]
    if name.endswith("-compat"):
        assert fusion.n_tokens(S) == 1 and out.extras["repeat"] == 256
    else:
        assert fusion.n_tokens(S) == (1 + S if slice_tokens else 1)


@pytest.mark.parametrize("name", ALL)
def test_slice_attention_is_a_distribution_over_real_slices(name, inputs):
    cfg = tiny_config(name)
    x = inputs(cfg)
    alpha = build_fusion(cfg).eval()(**x).slice_attention
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(B))
    assert (alpha >= 0).all()
    assert (alpha[~x["slice_mask"]] == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_masked_prompt_tokens_have_no_effect(name, inputs):
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).eval()
    x = inputs(cfg)
    changed = dict(
        x,
        prompt=torch.where(
            x["prompt_mask"].unsqueeze(-1), x["prompt"], 100.0 * torch.randn_like(x["prompt"])
        ),
    )
    assert not torch.equal(changed["prompt"], x["prompt"])
    a, b = fusion(**x), fusion(**changed)
    torch.testing.assert_close(a.tokens, b.tokens, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.slice_attention, b.slice_attention, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_prompt_tokens_that_are_not_masked_do_matter(name, inputs):
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).eval()
    x = inputs(cfg)
    changed = dict(x, prompt=x["prompt"] + torch.where(x["prompt_mask"].unsqueeze(-1), 1.0, 0.0))
    differs = not torch.allclose(fusion(**x).tokens, fusion(**changed).tokens)
    assert differs == (name != "identity")  # only the identity baseline ignores the prompt


@pytest.mark.parametrize("name", ALL)
def test_padded_slices_have_no_effect_on_real_tokens(name, inputs):
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).eval()
    x = inputs(cfg)
    noisy = torch.where(x["slice_mask"].unsqueeze(-1), x["slices"], 100.0 * torch.randn_like(x["slices"]))
    a, b = fusion(**x), fusion(**dict(x, slices=noisy))
    keep = a.extras["token_mask"]
    torch.testing.assert_close(a.tokens[keep], b.tokens[keep], atol=1e-6, rtol=0)
    torch.testing.assert_close(a.slice_attention, b.slice_attention, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name, inputs):
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).train()
    x = inputs(cfg)
    x["slices"].requires_grad_(True)
    out = fusion(**x)
    (out.tokens.square().sum() + (out.slice_attention * torch.arange(S)).sum()).backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    assert x["slices"].grad[x["slice_mask"]].abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_nothing_to_attend_gives_finite_output(name, inputs):
    cfg = tiny_config(name)
    x = inputs(cfg)
    x["prompt_mask"] = torch.zeros(B, T, dtype=torch.bool)  # e.g. an empty question
    out = build_fusion(cfg).eval()(**x)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.slice_attention).all()


@pytest.mark.parametrize("name", ALL)
def test_batch_items_are_independent(name, inputs):
    cfg = tiny_config(name)
    fusion = build_fusion(cfg).eval()
    x = inputs(cfg)
    both = fusion(**x).tokens
    alone = fusion(**{k: v[1:] for k, v in x.items()}).tokens
    torch.testing.assert_close(both[1:], alone, atol=1e-6, rtol=1e-6)
