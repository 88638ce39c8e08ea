"""ctscribe checkpoints: write, find and read the directory (DESIGN.md §3).

A checkpoint is a directory:
  config.json          ModelConfig.to_dict() (preprocessing included) + a `checkpoint` block
                       saying how the decoder is stored and what the model was trained on
                       (`trained_on`: synthetic-phantom | ct-rate | unknown, model.provenance);
  vision.safetensors   encoder.*, aggregator.*, fusion.*, label_head.*;
  adapter/             PEFT LoRA adapters (base LM referenced by `decoder.name_or_path`), and/or
  decoder/             decoder weights in the HF layout: the merged LM (`merged`), or the base
                       LM when it cannot be referenced by id (`full`: random-init bases);
  tokenizer/           tokenizer files (placeholder tokens included).
`resolve(dir_or_hub_id)` finds a local directory, or fetches a hub snapshot when online.
Base LMs come from `model.base_lm`, the released SAMF model from `model.samf_release`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.base_lm import load_base_lm
from model.config import ModelConfig
from model.decoder import torch_dtype
from model.errors import invalid, not_ready
from model.progress_bars import no_progress_bars

FORMAT = "ctscribe-checkpoint"
FORMAT_VERSION = 1
DECODER_LAYOUTS = ("adapter", "full", "merged")
TRAINED_ON_ATTR = "trained_on"
"""Attribute of a loaded CTScribeModel holding its checkpoint's `trained_on` (it travels with the
model into training and back out through `save`)."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def save(
    pipe_or_model, directory: str | os.PathLike, tokenizer=None, merged: bool = False, trained_on: str | None = None
) -> Path:
    """Write a checkpoint directory. `merged=True` folds LoRA into the decoder weights (serving);
    the in-memory model is not changed by saving. `trained_on` (None: the model's own, as
    loaded, else `unknown`) is recorded in the `checkpoint` block."""
    from model.provenance import check_trained_on

    model = getattr(pipe_or_model, "model", pipe_or_model)
    trained_on = check_trained_on(trained_on if trained_on is not None else trained_on_of(model))
    tokenizer = tokenizer if tokenizer is not None else getattr(pipe_or_model, "tokenizer", None)
    if tokenizer is None:
        raise invalid("save needs the tokenizer (pass a Pipeline, or tokenizer=...)")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg: ModelConfig = model.cfg
    decoder = model.decoder

    state = {}
    for prefix, module in model.vision_modules().items():
        for key, tensor in module.state_dict().items():
            state[f"{prefix}.{key}"] = tensor.detach().to("cpu").contiguous().clone()
    save_file(state, str(out / "vision.safetensors"), metadata={"format": FORMAT})

    for stale in ("adapter", "decoder"):
        shutil.rmtree(out / stale, ignore_errors=True)
    if merged or not decoder.has_lora:
        layout = "merged"
        base = _merged_copy(decoder) if decoder.has_lora else decoder.base
        base.save_pretrained(out / "decoder")
        cfg = cfg.replace(decoder=replace(cfg.decoder, lora_r=0))
    else:
        layout = "full" if not cfg.decoder.name_or_path else "adapter"
        decoder.lm.save_pretrained(out / "adapter", save_embedding_layers=False)
        if layout == "full":
            _unloaded_copy(decoder).save_pretrained(out / "decoder")
    tokenizer.save_pretrained(out / "tokenizer")
    doc = cfg.to_dict()
    doc["checkpoint"] = {"format": FORMAT, "format_version": FORMAT_VERSION, "decoder_weights": layout,
                         "trained_on": trained_on}
    (out / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
    return out


def trained_on_of(model) -> str:
    """What `model` was trained on: set by `load_parts` from the checkpoint, `unknown` otherwise."""
    from model.provenance import UNKNOWN

    return getattr(model, TRAINED_ON_ATTR, None) or UNKNOWN


def _unloaded_copy(decoder):
    """The base LM without its adapters (a copy: the live model keeps them)."""
    import copy

    return copy.deepcopy(decoder.lm).unload()


def _merged_copy(decoder):
    import copy

    return copy.deepcopy(decoder.lm).merge_and_unload()


def read_config(directory: str | os.PathLike) -> tuple[ModelConfig, dict]:
    path = Path(directory) / "config.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise not_ready(f"no checkpoint at {str(directory)!r} (config.json missing)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise invalid(f"unreadable checkpoint config {str(path)!r}: {err}") from None
    meta = doc.pop("checkpoint", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise invalid(
            f"{str(directory)!r} is not a ctscribe checkpoint (a released SAMF model needs the SAMF importer)"
        )
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise invalid(f"checkpoint format {meta.get('format_version')} is newer than this ctscribe reads")
    if meta.get("decoder_weights") not in DECODER_LAYOUTS:
        raise invalid(f"checkpoint decoder_weights must be one of {DECODER_LAYOUTS}")
    from model.provenance import UNKNOWN, check_trained_on

    meta["trained_on"] = check_trained_on(meta.get("trained_on", UNKNOWN))  # absent before the field existed
    return ModelConfig.from_dict(doc), meta


def resolve(dir_or_hub_id: str | os.PathLike) -> Path:
    """A local checkpoint directory for a path or a hub id (downloaded when online)."""
    path = Path(dir_or_hub_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise invalid(f"checkpoint {str(path)!r} is not a directory")
        return path
    ident = str(dir_or_hub_id)
    if not _HUB_ID.match(ident):
        raise not_ready(f"no checkpoint at {ident!r}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=ident))
    except Exception as err:  # offline, unknown repo, auth: all mean the weights are not here
        raise not_ready(f"cannot fetch checkpoint {ident!r} from the hub (offline or unknown id): {err}") from None


def load_parts(directory: Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
    """(model, tokenizer) from a checkpoint directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.ctscribe_model import assemble
    from model.decoder import Decoder, fit_vocab
    from model.tokenizer import prepare_tokenizer

    cfg, meta = read_config(directory)
    layout = meta["decoder_weights"]
    try:
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(directory / "tokenizer"), cfg.prompt)
    except OSError as err:
        raise invalid(f"checkpoint tokenizer unreadable: {err}") from None
    dec_dtype = dtype or torch_dtype(cfg.decoder.dtype)
    try:
        if layout == "adapter":
            base = load_base_lm(cfg.decoder)
        else:
            with no_progress_bars():
                base = AutoModelForCausalLM.from_pretrained(
                    directory / "decoder", dtype=dec_dtype, attn_implementation=cfg.decoder.attn_implementation
                )
    except OSError as err:
        raise invalid(f"checkpoint decoder weights unreadable: {err}") from None
    fit_vocab(base, len(tokenizer))
    base.requires_grad_(False)
    if layout in ("adapter", "full"):
        from peft import PeftModel

        lm = PeftModel.from_pretrained(base, str(directory / "adapter"), is_trainable=True)
    else:
        lm = base
    model = assemble(cfg, tokenizer, Decoder(cfg.decoder, lm))
    vision_path = directory / "vision.safetensors"
    if not vision_path.is_file():
        raise invalid(f"checkpoint {str(directory)!r} has no vision.safetensors")
    try:
        state = load_file(str(vision_path))
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise invalid(f"checkpoint vision.safetensors is unreadable: {err}") from None
    for prefix, module in model.vision_modules().items():
        part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as err:
            raise invalid(f"checkpoint {prefix} weights do not fit the config: {err}") from None
    setattr(model, TRAINED_ON_ATTR, meta["trained_on"])
    model.to(device)
    if dtype is not None:
        model.decoder.to(dtype)
    return model, tokenizer
