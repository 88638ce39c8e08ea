"""Reading the released SAMF model's directory: config, weights and tokenizer -> (model, tokenizer).

The release is a LLaVA-style transformers checkpoint (DESIGN.md §3); how its weights map
onto the samf-compat preset is `model.samf_import`'s job, reading the files is this module's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from model.decoder import torch_dtype
from model.errors import invalid


def is_samf_release(directory: Path) -> bool:
    """Whether `directory` holds the released SAMF model (a LLaVA-style transformers checkpoint)."""
    from model.samf_import import is_release_config

    path = Path(directory) / "config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and "checkpoint" not in doc and is_release_config(doc)


def _read_json_object(path: Path) -> dict | None:
    """A JSON object file's content; None when absent; a clear error when it is not an object."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise invalid(f"unreadable {path.name}: {err}") from None
    if not isinstance(doc, dict):
        raise invalid(f"{path.name} must be a JSON object")
    return doc


def read_release_state(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a transformers checkpoint: model.safetensors, its shards, or pytorch_model*.bin."""
    directory = Path(directory)
    files = sorted(directory.glob("model*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise invalid(f"{str(directory)!r}: no model*.safetensors or pytorch_model*.bin weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            part = load_file(str(file)) if file.suffix == ".safetensors" else torch.load(
                file, map_location="cpu", weights_only=True)
        except Exception as err:  # damaged or foreign file
            raise invalid(f"unreadable weights file {file.name!r}: {err}") from None
        state.update(part)
    return state


def load_samf_release(
    directory: Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    *,
    vit_heads: int | None = None,
    aggregator_heads: int | None = None,
):
    """(model, tokenizer) of the released SAMF checkpoint, as the samf-compat preset (`model.samf_import`)."""
    from transformers import AutoTokenizer

    from model.samf_import import (
        build_release_model,
        release_language_model,
        release_model_config,
        split_release_state,
    )
    from model.tokenizer import prepare_tokenizer

    directory = Path(directory)
    hf_config = json.loads((directory / "config.json").read_text())
    generation_config = _read_json_object(directory / "generation_config.json")
    parts = split_release_state(read_release_state(directory))
    cfg = release_model_config(hf_config, parts, generation_config=generation_config, source=str(directory),
                               vit_heads=vit_heads, aggregator_heads=aggregator_heads)
    if dtype is not None:
        cfg = cfg.replace(decoder=replace(cfg.decoder, dtype=str(dtype).removeprefix("torch.")))
    try:
        # The slow (SentencePiece) tokenizer, as upstream loads it: a release directory may hold
        # only tokenizer.model (+ tokenizer_config.json, added tokens).
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(directory, use_fast=False), cfg.prompt)
    except (OSError, ValueError, ImportError) as err:
        raise invalid(f"SAMF checkpoint tokenizer unreadable: {err}") from None
    lm = release_language_model(hf_config, parts["lm"], torch_dtype(cfg.decoder.dtype))
    model = build_release_model(cfg, parts, tokenizer, lm)
    return model.to(device), tokenizer
