"""Base language models and their tokenizers: a hub id, a local directory, or a `gguf:` id."""

from __future__ import annotations

from model.config import DecoderConfig
from model.decoder import torch_dtype
from model.errors import invalid, not_ready
from model.gguf_cache import convert_gguf
from model.progress_bars import no_progress_bars


def resolve_lm_source(name_or_path: str) -> str:
    if name_or_path.startswith("gguf:"):
        return str(convert_gguf(name_or_path))
    return name_or_path


def load_base_lm(cfg: DecoderConfig):
    """The base causal LM named by the config (hub id, local dir, or gguf: spec)."""
    from transformers import AutoModelForCausalLM

    if not cfg.name_or_path:
        raise invalid("decoder.name_or_path is empty: a random-init decoder has no base weights to load")
    source = resolve_lm_source(cfg.name_or_path)
    try:
        with no_progress_bars():
            return AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype(cfg.dtype), attn_implementation=cfg.attn_implementation
            )
    except OSError as err:
        raise not_ready(f"cannot load the decoder {cfg.name_or_path!r} (offline or missing?): {err}") from None


def load_base_tokenizer(cfg: DecoderConfig):
    from transformers import AutoTokenizer

    source = resolve_lm_source(cfg.tokenizer or cfg.name_or_path)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise not_ready(f"cannot load the tokenizer of {cfg.name_or_path!r} (offline or missing?): {err}") from None
