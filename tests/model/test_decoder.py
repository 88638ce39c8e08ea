"""Decoder with LoRA: frozen base, per-architecture targets, merged == unmerged."""

import pytest
import torch

import model
from model.config import DecoderConfig
from model.decoder import LORA_TARGETS, attach_lora, build_decoder
from model.errors import ModelError


def _randomise_lora(decoder, seed=0):
    """LoRA B starts at zero (a no-op); give the adapters real values so merging matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in decoder.lm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_only_adapters_and_vision_parts_get_gradients(tiny_cts):
    pipe = model.build("tiny", seed=1)
    m = pipe.model.train()
    from model.batching import pad_prompts, stack_cts
    from model.prompts import encode, report_prompt

    prompt = report_prompt(m.cfg.prompt, m.n_placeholders(tiny_cts[0].n_slices))
    enc = encode(pipe.tokenizer, m.cfg.prompt, prompt, "No acute findings.")
    batch = {**stack_cts(tiny_cts[:1]), **pad_prompts([enc], pipe.tokenizer.pad_token_id, side="right")}
    batch["label_targets"] = torch.ones(1, 18)
    out = m(batch)
    out.loss.backward()
    decoder_grads = {n for n, p in m.decoder.named_parameters() if p.grad is not None}
    assert decoder_grads and all("lora_" in n for n in decoder_grads)
    assert all(not p.requires_grad for n, p in m.decoder.named_parameters() if "lora_" not in n)
    lora_b = [p for n, p in m.decoder.named_parameters() if "lora_B" in n]
    assert any(float(p.grad.abs().sum()) > 0 for p in lora_b)
    for name, module in m.vision_modules().items():
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.parameters()), name


def test_merged_equals_unmerged():
    pipe = model.build("tiny", seed=2)
    dec = pipe.model.decoder.eval()
    _randomise_lora(dec)
    ids = torch.randint(0, len(pipe.tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = dec(inputs_embeds=dec.embed_tokens(ids), attention_mask=mask).logits
        without = None
        with dec.lm.disable_adapter():
            without = dec(inputs_embeds=dec.embed_tokens(ids), attention_mask=mask).logits
        dec.merge()
        after = dec(inputs_embeds=dec.embed_tokens(ids), attention_mask=mask).logits
    assert not dec.has_lora and dec.cfg.lora_r == 0
    assert (before - without).abs().max() > 1e-3  # the adapters do change the output
    assert torch.allclose(before, after, atol=1e-5), (before - after).abs().max()


def test_llama_targets_get_adapters_and_phi3_its_own():
    pipe = model.build("tiny", seed=0)
    names = {n for n, _ in pipe.model.decoder.lm.named_modules() if n.endswith("lora_A")}
    for target in LORA_TARGETS["llama"]:
        assert any(f".{target}.lora_A" in n for n in names), target

    from transformers import Phi3Config, Phi3ForCausalLM

    phi = Phi3ForCausalLM(Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    wrapped = attach_lora(phi, DecoderConfig(hidden_size=32))
    phi_names = {n for n, _ in wrapped.named_modules() if n.endswith("lora_A")}
    for target in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"):
        assert any(f".{target}.lora_A" in n for n in phi_names), target


def test_hidden_size_mismatch_is_refused():
    from model.decoder import random_lm

    lm = random_lm(DecoderConfig(name_or_path="", hidden_size=32, n_heads=2, n_kv_heads=1, intermediate_size=64),
                   64, None, None, None)
    with pytest.raises(ModelError):
        build_decoder(DecoderConfig(name_or_path="", hidden_size=64), lm, 64)


def test_vocabulary_grows_deterministically_for_added_tokens():
    from model.decoder import fit_vocab, random_lm

    cfg = DecoderConfig(name_or_path="", hidden_size=32, n_heads=2, n_kv_heads=1, intermediate_size=64)
    torch.manual_seed(0)
    a = random_lm(cfg, 50, None, None, None)
    torch.manual_seed(0)
    b = random_lm(cfg, 50, None, None, None)
    fit_vocab(a, 53)
    fit_vocab(b, 53)
    wa, wb = a.get_input_embeddings().weight, b.get_input_embeddings().weight
    assert wa.shape[0] == 53
    assert torch.equal(wa, wb)
    assert torch.allclose(wa[50], wa[:50].mean(0))
