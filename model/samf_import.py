"""The released SAMF model (a merged LLaVA-style Phi-3 checkpoint) -> the `samf-compat` model (§3, §4.6).

The release is `LlavaPhi3ForCausalLM.save_pretrained` output. Its tensors, by prefix:
  model.vision_tower.vision_tower.*   the DINO ViT-B/16 (raw DINO names: cls_token, pos_embed,
                                      patch_embed.proj.*, blocks.N.*, norm.*)
  model.mm_projector.*                the VolumeAggregator (cls_token, transformer_encoder.layers.N.*,
                                      volume_proj.*): our compat aggregator's own names
  model.mm_fusion.*                   SAMF (project_3d, project_2d, fusion_layer) or Ao2D (+ project_text):
                                      our compat fusions' own names; which one is read from the keys
  model.embed_tokens, model.layers.*, model.norm, lm_head
                                      the Phi-3 LM, already in transformers' Phi3ForCausalLM names
Sizes are read from the tensors. Head counts leave no trace in weights: the ViT gets
hidden/64 (DINO's head width), the aggregator the release's 8, both overridable.
Pure mapping code; `model.samf_release` reads the files.
"""

from __future__ import annotations

import re
from dataclasses import replace

import torch

from model.config import ModelConfig
from model.errors import invalid

VISION_PREFIX = "model.vision_tower.vision_tower."
PROJECTOR_PREFIX = "model.mm_projector."
FUSION_PREFIX = "model.mm_fusion."
LM_PREFIXES = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")
RELEASE_MODEL_TYPES = ("llava_phi3",)
RELEASE_AGGREGATOR_HEADS = 8
DINO_HEAD_WIDTH = 64


def is_release_config(hf_config: dict) -> bool:
    """A transformers config.json of the release (LlavaPhi3Config, or any config with mm_* keys)."""
    return hf_config.get("model_type") in RELEASE_MODEL_TYPES or any(k.startswith("mm_") for k in hf_config)


def split_release_state(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The release's tensors grouped by part, prefixes stripped (the LM keeps its HF names)."""
    parts: dict[str, dict[str, torch.Tensor]] = {"vision": {}, "projector": {}, "fusion": {}, "lm": {}}
    unknown = []
    for key, tensor in state.items():
        if key.endswith("rotary_emb.inv_freq"):  # a buffer older transformers versions saved
            continue
        if key.startswith(VISION_PREFIX):
            parts["vision"][key[len(VISION_PREFIX) :]] = tensor
        elif key.startswith(PROJECTOR_PREFIX):
            parts["projector"][key[len(PROJECTOR_PREFIX) :]] = tensor
        elif key.startswith(FUSION_PREFIX):
            parts["fusion"][key[len(FUSION_PREFIX) :]] = tensor
        elif key.startswith(LM_PREFIXES):
            parts["lm"][key] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise invalid(f"SAMF checkpoint: unexpected tensors {unknown[:5]} (of {len(unknown)})")
    for name, part in parts.items():
        if not part:
            raise invalid(f"SAMF checkpoint: no {name} tensors (is this the merged release?)")
    return parts


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    if not found:
        raise invalid(f"SAMF checkpoint: no tensors match {pattern!r}")
    return max(found) + 1


def release_dtype(hf_config: dict) -> str:
    """The LM dtype of upstream's evaluation, `from_pretrained(...)` without a dtype, as the
    transformers this project runs reads it (DESIGN.md §4.6): the dtype config.json names
    (`torch_dtype`, or `dtype` as transformers 5 writes it), else float32. (transformers 4.41,
    which upstream pinned, loaded float32 even then; `model.load(dtype=torch.float32)` does that.)"""
    return str(hf_config.get("torch_dtype") or hf_config.get("dtype") or "float32")


def release_stop_ids(hf_config: dict, generation_config: dict | None) -> tuple[int, ...]:
    """The ids upstream's `generate()` stops on: generation_config.json's eos_token_id (int or
    list), else config.json's."""
    for doc in (generation_config or {}, hf_config):
        eos = doc.get("eos_token_id")
        if eos is not None:
            return tuple(int(i) for i in (eos if isinstance(eos, list) else [eos]))
    return ()


def release_model_config(
    hf_config: dict,
    parts: dict[str, dict[str, torch.Tensor]],
    *,
    generation_config: dict | None = None,
    source: str = "",
    vit_heads: int | None = None,
    aggregator_heads: int | None = None,
) -> ModelConfig:
    """The samf-compat preset with every size taken from the release's tensors and config."""
    base = ModelConfig.from_preset("samf-compat")
    vision, projector, fusion = parts["vision"], parts["projector"], parts["fusion"]
    try:
        hidden = int(vision["cls_token"].shape[-1])
        patch = int(vision["patch_embed.proj.weight"].shape[-1])
        grid = round((int(vision["pos_embed"].shape[1]) - 1) ** 0.5)
        encoder = replace(
            base.encoder, image_size=grid * patch, patch_size=patch, hidden_size=hidden,
            n_layers=_count(vision, r"blocks\.(\d+)\."), n_heads=vit_heads or max(1, hidden // DINO_HEAD_WIDTH),
            intermediate_size=int(vision["blocks.0.mlp.fc1.weight"].shape[0]), pretrained="",
        )
        aggregator = replace(
            base.aggregator, d_volume=int(projector["volume_proj.weight"].shape[0]),
            n_layers=_count(projector, r"transformer_encoder\.layers\.(\d+)\."),
            n_heads=aggregator_heads or RELEASE_AGGREGATOR_HEADS,
            d_ff=int(projector["transformer_encoder.layers.0.linear1.weight"].shape[0]),
        )
    except KeyError as err:
        raise invalid(f"SAMF checkpoint: missing tensor {err}") from None
    fusion_name = "ao2d-compat" if "project_text.weight" in fusion else "samf-compat"
    decoder = replace(
        base.decoder, name_or_path=source, hidden_size=int(hf_config["hidden_size"]),
        n_layers=int(hf_config.get("num_hidden_layers", base.decoder.n_layers)),
        n_heads=int(hf_config.get("num_attention_heads", base.decoder.n_heads)),
        n_kv_heads=int(hf_config.get("num_key_value_heads") or hf_config.get("num_attention_heads", 1)),
        intermediate_size=int(hf_config.get("intermediate_size", base.decoder.intermediate_size)),
        max_position_embeddings=int(hf_config.get("max_position_embeddings", base.decoder.max_position_embeddings)),
        lora_r=0, tokenizer=source, dtype=release_dtype(hf_config),
        stop_token_ids=release_stop_ids(hf_config, generation_config),
    )
    return base.replace(encoder=encoder, aggregator=aggregator, fusion=replace(base.fusion, name=fusion_name),
                        decoder=decoder)


def release_language_model(hf_config: dict, lm_state: dict[str, torch.Tensor], dtype: torch.dtype):
    """The release's Phi-3 LM as a plain transformers Phi3ForCausalLM with its weights."""
    from transformers import Phi3Config, Phi3ForCausalLM

    fields = {k: v for k, v in hf_config.items() if k not in ("model_type", "architectures", "auto_map")}
    config = Phi3Config(**fields)
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        lm = Phi3ForCausalLM(config)
    missing, unexpected = lm.load_state_dict(lm_state, strict=False, assign=True)
    if config.tie_word_embeddings and "lm_head.weight" in missing:
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise invalid(f"SAMF checkpoint LM does not fit its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        lm.tie_weights()
    # Rotary inverse frequencies are non-persistent buffers, still on "meta": rebuild the module.
    with torch.device("cpu"):
        lm.model.rotary_emb = type(lm.model.rotary_emb)(config=config)
    return lm.to(dtype).eval()


def build_release_model(cfg: ModelConfig, parts: dict[str, dict[str, torch.Tensor]], tokenizer, lm):
    """Assemble the samf-compat model around the release LM and load its vision tensors."""
    from model.ctscribe_model import assemble
    from model.decoder import build_decoder
    from model.encoder import load_dino_state_dict

    model = assemble(cfg, tokenizer, build_decoder(cfg.decoder, lm, len(tokenizer), lora=False))
    load_dino_state_dict(model.encoder, parts["vision"])
    for name, module, state in (("mm_projector", model.aggregator, parts["projector"]),
                                ("mm_fusion", model.fusion, parts["fusion"])):
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise invalid(f"SAMF checkpoint {name} does not fit: {err}") from None
    return model.eval()
