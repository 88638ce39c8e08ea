"""SAMF release import: a random-weight checkpoint in the release's exact key layout, at tiny sizes,
loads through `model.load` and gives the logits of an independent step-by-step computation of
DESIGN.md §4.6 (DINO ViT -> VolumeAggregator -> SAMF / Ao2D -> 256 placeholders -> Phi-3)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import Phi3Config, Phi3ForCausalLM

import model
from model.config import EncoderConfig, PromptConfig
from model.errors import ModelError
from model.tokenizer import build_tiny_tokenizer
from tests.model.test_encoder import random_dino_state_dict, reference_dino_cls

VIT = EncoderConfig(image_size=32, patch_size=8, hidden_size=64, n_layers=2, n_heads=1, intermediate_size=128)
D_VOLUME, AGG_LAYERS, AGG_HEADS, AGG_FF = 32, 2, 8, 96
D_MODEL = 64
N_PLACEHOLDERS = 256
SAMF_PROMPT = PromptConfig(chat_format="samf-raw", vision_token="<im_patch>", extra_special_tokens=("<bx_start>", "<bx_end>"))


def _r(g, *shape, scale=0.1):
    return torch.randn(*shape, generator=g) * scale


def release_hf_config(tokenizer, ao2d: bool) -> dict:
    """The release's config.json (LlavaPhi3Config) at tiny sizes."""
    return dict(model_type="llava_phi3", architectures=["LlavaPhi3ForCausalLM"], vocab_size=len(tokenizer),
                hidden_size=D_MODEL, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                tie_word_embeddings=False, mm_fuse_type="ao2d" if ao2d else "samf", vision_tower="dino_vitb16")


def release_state(hf: dict, ao2d: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the release's names: Phi-3 LM, DINO ViT, VolumeAggregator, SAMF / Ao2D."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lm = Phi3ForCausalLM(Phi3Config(**{k: v for k, v in hf.items() if k not in ("model_type", "architectures")}))
    state = {k: v.contiguous() for k, v in lm.state_dict().items()}
    state |= {"model.vision_tower.vision_tower." + k: v for k, v in random_dino_state_dict(VIT, seed).items()}
    d = VIT.hidden_size
    proj = {"cls_token": _r(g, 1, 1, d), "volume_proj.weight": _r(g, D_VOLUME, d), "volume_proj.bias": _r(g, D_VOLUME)}
    for i in range(AGG_LAYERS):
        p = f"transformer_encoder.layers.{i}."
        proj |= {p + "self_attn.in_proj_weight": _r(g, 3 * d, d), p + "self_attn.in_proj_bias": _r(g, 3 * d),
                 p + "self_attn.out_proj.weight": _r(g, d, d), p + "self_attn.out_proj.bias": _r(g, d),
                 p + "linear1.weight": _r(g, AGG_FF, d), p + "linear1.bias": _r(g, AGG_FF),
                 p + "linear2.weight": _r(g, d, AGG_FF), p + "linear2.bias": _r(g, d),
                 p + "norm1.weight": 1 + _r(g, d), p + "norm1.bias": _r(g, d),
                 p + "norm2.weight": 1 + _r(g, d), p + "norm2.bias": _r(g, d)}
    state |= {"model.mm_projector." + k: v for k, v in proj.items()}
    k = 4 if ao2d else 3
    fusion = {"project_3d.weight": _r(g, D_MODEL, D_VOLUME), "project_3d.bias": _r(g, D_MODEL),
              "project_2d.weight": _r(g, D_MODEL, d), "project_2d.bias": _r(g, D_MODEL),
              "fusion_layer.weight": _r(g, D_MODEL, k * D_MODEL), "fusion_layer.bias": _r(g, D_MODEL)}
    if ao2d:
        fusion |= {"project_text.weight": _r(g, D_MODEL, D_MODEL), "project_text.bias": _r(g, D_MODEL)}
    state |= {"model.mm_fusion." + k: v for k, v in fusion.items()}
    return state


def release_checkpoint(directory, ao2d: bool, seed: int = 0):
    """Write config.json, model.safetensors and tokenizer files as the release lays them out."""
    tokenizer = build_tiny_tokenizer(SAMF_PROMPT)
    hf = release_hf_config(tokenizer, ao2d)
    state = release_state(hf, ao2d, seed)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(hf))
    tokenizer.save_pretrained(directory)
    return state, hf, tokenizer


def reference_inputs_embeds(state, slices, input_ids, ao2d: bool) -> torch.Tensor:
    """(1, T, D) §4.6 written out from the raw release tensors (float64 where it is not the LM's),
    spliced as upstream's `prepare_inputs_for_multimodal` does: positions 1..256, whatever the
    tokens there (`cat(embeds[:, :1], image_features, embeds[:, 257:])`)."""
    vision = {k[len("model.vision_tower.vision_tower."):]: v for k, v in state.items() if ".vision_tower." in k}
    proj = {k[len("model.mm_projector."):]: v.double() for k, v in state.items() if ".mm_projector." in k}
    fus = {k[len("model.mm_fusion."):]: v.double() for k, v in state.items() if ".mm_fusion." in k}
    f2 = reference_dino_cls(vision, slices, VIT).double()  # (S, d): CLS after the final norm
    d = f2.shape[1]

    h = torch.cat([proj["cls_token"][0], f2])  # (1 + S, d): no plane or position code
    for i in range(AGG_LAYERS):  # nn.TransformerEncoderLayer: post-norm, ReLU
        p = f"transformer_encoder.layers.{i}."
        q, k, v = (h @ proj[p + "self_attn.in_proj_weight"].T + proj[p + "self_attn.in_proj_bias"]).split(d, -1)
        dh = d // AGG_HEADS
        heads = [torch.softmax(q[:, j * dh:(j + 1) * dh] @ k[:, j * dh:(j + 1) * dh].T / math.sqrt(dh), -1)
                 @ v[:, j * dh:(j + 1) * dh] for j in range(AGG_HEADS)]
        a = torch.cat(heads, -1) @ proj[p + "self_attn.out_proj.weight"].T + proj[p + "self_attn.out_proj.bias"]
        h = F.layer_norm(h + a, (d,), proj[p + "norm1.weight"], proj[p + "norm1.bias"], 1e-5)
        f = torch.relu(h @ proj[p + "linear1.weight"].T + proj[p + "linear1.bias"])
        h = F.layer_norm(h + f @ proj[p + "linear2.weight"].T + proj[p + "linear2.bias"], (d,),
                         proj[p + "norm2.weight"], proj[p + "norm2.bias"], 1e-5)
    f3 = h[0] @ proj["volume_proj.weight"].T + proj["volume_proj.bias"]  # (d_volume,)

    embed = state["model.embed_tokens.weight"].double()
    e = embed[input_ids]  # (T, D): the WHOLE input sequence, placeholders included
    p3 = fus["project_3d.weight"] @ f3 + fus["project_3d.bias"]
    p2 = f2 @ fus["project_2d.weight"].T + fus["project_2d.bias"]
    pt = e @ fus["project_text.weight"].T + fus["project_text.bias"] if ao2d else e
    alpha, beta = torch.softmax(p2 @ p3, 0), torch.softmax(pt @ p3, 0)  # unscaled
    parts = [p3, alpha @ p2, beta @ pt]
    if ao2d:
        parts.append((torch.softmax(pt @ p2.T, -1) @ p2).mean(0))
    z = fus["fusion_layer.weight"] @ torch.cat(parts) + fus["fusion_layer.bias"]  # (D,)

    return torch.cat([e[:1], z.expand(N_PLACEHOLDERS, -1), e[1 + N_PLACEHOLDERS:]])[None].float()


def reference_lm(state, hf) -> Phi3ForCausalLM:
    """The release's LM as upstream's `from_pretrained` without a dtype gives it: in the dtype
    config.json names, else float32."""
    lm = Phi3ForCausalLM(Phi3Config(**{k: v for k, v in hf.items() if k not in ("model_type", "architectures")}))
    lm.load_state_dict({k: v for k, v in state.items() if k.startswith(("model.embed", "model.layers", "model.norm", "lm_head"))})
    return lm.to(getattr(torch, hf.get("torch_dtype") or "float32")).eval()


def reference_logits(state, hf, slices, input_ids, ao2d: bool) -> torch.Tensor:
    with torch.no_grad():
        return reference_lm(state, hf)(inputs_embeds=reference_inputs_embeds(state, slices, input_ids, ao2d)).logits[0]


@pytest.mark.parametrize("ao2d", [False, True], ids=["samf", "ao2d"])
def test_release_checkpoint_matches_the_reference_computation(tmp_path, ao2d):
    state, hf, tokenizer = release_checkpoint(tmp_path / "release", ao2d)
    pipe = model.load(tmp_path / "release", dtype=torch.float32)
    assert pipe.config.fusion.name == ("ao2d-compat" if ao2d else "samf-compat")
    assert pipe.config.encoder.hidden_size == VIT.hidden_size and pipe.config.aggregator.d_volume == D_VOLUME

    g = torch.Generator().manual_seed(3)
    n_slices = pipe.config.preprocess.n_slices
    slices = torch.rand(n_slices, 3, VIT.image_size, VIT.image_size, generator=g)
    prompt = "<im_patch>" * N_PLACEHOLDERS + pipe.config.prompt.report_instruction
    input_ids = torch.tensor([tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    assert int((input_ids == tokenizer.convert_tokens_to_ids("<im_patch>")).sum()) == N_PLACEHOLDERS
    batch = {"slices": slices[None], "input_ids": input_ids[None], "attention_mask": torch.ones(1, len(input_ids))}
    with torch.no_grad():
        got = pipe.model(batch).logits[0]
    want = reference_logits(state, hf, slices, input_ids, ao2d)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_imported_model_saves_as_a_ctscribe_checkpoint(tmp_path):
    release_checkpoint(tmp_path / "release", ao2d=True)
    pipe = model.load(tmp_path / "release")
    assert pipe.config.decoder.dtype == "float32"  # no torch_dtype in config.json: from_pretrained's float32
    pipe.save(tmp_path / "converted")
    again = model.load(tmp_path / "converted")
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        a = pipe.model.decoder(input_ids=ids).logits
        b = again.model.decoder(input_ids=ids).logits
    assert torch.equal(a, b)
    assert again.weights_hash == pipe.weights_hash


def test_a_foreign_tensor_is_a_clear_error(tmp_path):
    state, _, _ = release_checkpoint(tmp_path / "release", ao2d=False)
    save_file({**state, "model.mm_newthing.weight": torch.zeros(2)}, str(tmp_path / "release" / "model.safetensors"))
    with pytest.raises(ModelError, match="unexpected tensors"):
        model.load(tmp_path / "release")
