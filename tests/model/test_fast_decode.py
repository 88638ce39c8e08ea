"""The static-cache decode path must produce what HF `generate` produces, token for token."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

from model.fast_decode import FastDecoder, SamplingConfig, pick_next_token

D_MODEL = 64


def _tiny_lm(kind: str, attn: str):
    common = dict(vocab_size=97, hidden_size=D_MODEL, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2)
    torch.manual_seed(0)
    if kind == "phi3":
        config = Phi3Config(num_key_value_heads=4, **common)
        config._attn_implementation = attn
        return Phi3ForCausalLM(config).eval()
    config = LlamaConfig(num_key_value_heads=2, **common)
    config._attn_implementation = attn
    return LlamaForCausalLM(config).eval()


def _left_padded_prompt(batch=3, length=7):
    gen = torch.Generator().manual_seed(1)
    embeds = torch.randn(batch, length, D_MODEL, generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, :1] = 0
    return embeds, mask


@pytest.mark.parametrize("kind,attn", [("llama", "sdpa"), ("llama", "eager"), ("phi3", "sdpa")])
def test_greedy_equals_hf_generate(kind, attn):
    lm = _tiny_lm(kind, attn)
    embeds, mask = _left_padded_prompt()
    expected = lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=24, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
    got = FastDecoder(lm).generate(embeds, mask, SamplingConfig(max_new_tokens=24))
    assert torch.equal(got, expected)


def test_each_row_stops_at_its_own_eos():
    lm = _tiny_lm("llama", "sdpa")
    embeds, mask = _left_padded_prompt()
    free = FastDecoder(lm).generate(embeds, mask, SamplingConfig(max_new_tokens=12))
    eos = int(free[0, 3])  # make row 0's fourth token the stop token
    stopped = FastDecoder(lm).generate(embeds, mask, SamplingConfig(max_new_tokens=12, eos_token_ids=(eos,),
                                                                     pad_token_id=96))
    row0 = stopped[0].tolist()
    first_eos = row0.index(eos)
    assert first_eos <= 3
    assert all(t == 96 for t in row0[first_eos + 1:])
    # Rows that never produced the stop token are untouched by it.
    for row in range(1, 3):
        if eos not in free[row, : stopped.shape[1]].tolist():
            assert torch.equal(stopped[row], free[row, : stopped.shape[1]])


def test_sampling_is_reproducible_and_top_p_tiny_is_greedy():
    lm = _tiny_lm("llama", "sdpa")
    embeds, mask = _left_padded_prompt()
    decoder = FastDecoder(lm)
    sampled = [decoder.generate(embeds, mask, SamplingConfig(max_new_tokens=10, temperature=1.0),
                                generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(sampled[0], sampled[1])
    nucleus = decoder.generate(embeds, mask, SamplingConfig(max_new_tokens=10, temperature=1.0, top_p=1e-6),
                               generator=torch.Generator().manual_seed(5))
    greedy = decoder.generate(embeds, mask, SamplingConfig(max_new_tokens=10))
    assert torch.equal(nucleus, greedy)


def test_pick_next_token_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = {int(pick_next_token(logits, SamplingConfig(temperature=1.0, top_p=0.7), gen)) for _ in range(200)}
    assert draws == {0, 1}


def test_flash_attention_is_refused_with_a_clear_message():
    lm = _tiny_lm("llama", "sdpa")
    lm.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="sdpa"):
        FastDecoder(lm)
