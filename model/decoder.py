"""The language decoder (DESIGN.md §4.5): any HF causal LM with PEFT LoRA adapters.

`Decoder` wraps the LM (a `PeftModel` while adapters are attached, the plain LM once merged
or without LoRA) and exposes what the assembled model needs: token embeddings, a forward
pass over `inputs_embeds`, and `merge()` for serving. The base LM's weights are frozen;
only the LoRA matrices train. Getting base weights from disk or the hub is base_lm.py's
job; this module only builds and wraps modules.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from model.config import DecoderConfig
from model.errors import invalid

# transformers 5.19 renamed the KV cache argument/output `past_key_values` to `cache` (the old
# name goes in 5.40). The decoder passes and reads the cache under the name the installed
# version uses (CACHE_ARG, `cache_of`), so no deprecated name is used on any supported version.
# PEFT still reads the deprecated `is_gradient_checkpointing` when wrapping; that notice goes.
CACHE_ARG = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def cache_of(output):
    """The KV cache an LM forward returned (`.cache`, or `.past_key_values` before 5.19)."""
    return getattr(output, CACHE_ARG)


LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "llama": LLAMA_TARGETS,  # Llama family, incl. SmolLM2
    "mistral": LLAMA_TARGETS,
    "qwen2": LLAMA_TARGETS,
    "qwen3": LLAMA_TARGETS,
    "gemma": LLAMA_TARGETS,
    "gemma2": LLAMA_TARGETS,
    "olmo2": LLAMA_TARGETS,
}
"""Per-architecture (HF `model_type`) modules that get LoRA adapters."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise invalid(f"unknown dtype {name!r}; known: {sorted(DTYPES)}") from None


def lora_targets(cfg: DecoderConfig, model_type: str) -> tuple[str, ...]:
    if cfg.lora_targets:
        return tuple(cfg.lora_targets)
    try:
        return LORA_TARGETS[model_type]
    except KeyError:
        raise invalid(
            f"no default LoRA targets for model type {model_type!r}; set decoder.lora_targets "
            f"(known types: {sorted(LORA_TARGETS)})"
        ) from None


def random_lm(cfg: DecoderConfig, vocab_size: int, bos_id: int | None, eos_id: int | None, pad_id: int | None):
    """A randomly initialised Llama-family LM of the config's sizes (the `tiny` preset)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.hidden_size % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads:
        raise invalid("decoder: n_heads must divide hidden_size and n_kv_heads must divide n_heads")
    lcfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        attn_implementation=cfg.attn_implementation,
    )
    return LlamaForCausalLM(lcfg).to(torch_dtype(cfg.dtype))


def fit_vocab(lm, n_tokens: int) -> None:
    """Grow the LM's embeddings to the tokenizer's length (placeholder tokens were added).

    New rows are the mean of the existing rows, deterministically (HF's default samples them):
    a reloaded base LM must get the same rows, and the placeholder row is never read anyway
    (the visual tokens overwrite it) and never generated (generation suppresses it).
    """
    emb = lm.get_input_embeddings()
    old = emb.weight.shape[0]
    if n_tokens <= old:
        return
    lm.resize_token_embeddings(n_tokens, mean_resizing=False)
    with torch.no_grad():
        inp = lm.get_input_embeddings().weight
        inp[old:] = inp[:old].mean(dim=0, keepdim=True)
        out = lm.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != inp.data_ptr():
            out.weight[old:] = out.weight[:old].mean(dim=0, keepdim=True)
            if getattr(out, "bias", None) is not None:
                out.bias[old:] = 0.0


class Decoder(nn.Module):
    """A causal LM read through `inputs_embeds`, with optional LoRA adapters."""

    def __init__(self, cfg: DecoderConfig, lm):
        super().__init__()
        self.cfg = cfg
        self.lm = lm

    @property
    def has_lora(self) -> bool:
        from peft import PeftModel

        return isinstance(self.lm, PeftModel)

    @property
    def base(self):
        """The underlying HF model (without the PEFT wrapper)."""
        return self.lm.get_base_model() if self.has_lora else self.lm

    @property
    def hidden_size(self) -> int:
        return int(self.base.config.hidden_size)

    @property
    def dtype(self) -> torch.dtype:
        return self.base.get_input_embeddings().weight.dtype

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.base.get_input_embeddings()(input_ids)  # (B, T, d_model)

    def forward(
        self,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool = False,
        input_ids: torch.Tensor | None = None,
        logits_to_keep: int = 0,
    ):
        """The LM's output (`.logits`, its KV cache: `cache_of(output)`); no loss (the model computes it)."""
        return self.lm(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **({CACHE_ARG: past_key_values} if past_key_values is not None else {}),
        )

    def merge(self) -> None:
        """Fold the LoRA updates into the base weights and drop the adapters (serving)."""
        if self.has_lora:
            self.lm = self.lm.merge_and_unload()
        self.cfg = _without_lora(self.cfg)


def _without_lora(cfg: DecoderConfig) -> DecoderConfig:
    from dataclasses import replace

    return replace(cfg, lora_r=0)


def attach_lora(lm, cfg: DecoderConfig):
    """Freeze the base LM and wrap it with LoRA adapters (r, alpha, dropout from the config)."""
    from peft import LoraConfig, get_peft_model

    lm.requires_grad_(False)
    if cfg.lora_r <= 0:
        return lm
    model_type = getattr(lm.config, "model_type", "")
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(lora_targets(cfg, model_type)),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(lm, lora)


def build_decoder(cfg: DecoderConfig, lm, n_tokens: int, lora: bool = True) -> Decoder:
    """Wrap a base LM: fit its vocabulary to the tokenizer, freeze it, attach LoRA."""
    if int(lm.config.hidden_size) != cfg.hidden_size:
        raise invalid(
            f"decoder {cfg.name_or_path!r} has hidden size {lm.config.hidden_size}, the config says {cfg.hidden_size}"
        )
    fit_vocab(lm, n_tokens)
    lm.requires_grad_(False)
    if lora and cfg.lora_r > 0:
        lm = attach_lora(lm, cfg)
    return Decoder(cfg, lm)
