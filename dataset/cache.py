"""The preprocessing cache: every volume is read and preprocessed once per preprocess config.

A CT-RATE volume takes seconds to decompress, reorient, resample and slice; training reads
it every epoch. The cache stores the preprocessed tensors as `.safetensors`, keyed by

    sha256(volume file bytes) + sha256(preprocess config JSON + HU conversion of the sample)

so an edited file or a changed preprocess config (spacing, slice counts, windows, size) is
a miss, while a moved or renamed file is still a hit. Hashing a 300 MB file costs about a
second, so the file hash itself is remembered per (path, size, mtime) in a small sidecar.
Writes go to a temporary file renamed into place, so a killed run or two DataLoader workers
writing the same entry never leave a torn file.

Frozen-encoder stages can also cache encoder features per (prepared entry, encoder weights
hash) with `FeatureCache`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ctscribe.errors import CtscribeError, ErrorCode

_HASH_CHUNK_BYTES = 8 * 1024 * 1024
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def config_hash(config) -> str:
    """sha256[:16] of a config (dataclass, `to_dict()` object or mapping) as sorted JSON."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    elif is_dataclass(config):
        config = asdict(config)
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileHasher:
    """Content hashes of files, remembered per (absolute path, size, mtime_ns)."""

    def __init__(self, sidecar_dir: str | Path):
        self.sidecar_dir = Path(sidecar_dir)
        self.computed = 0
        """How many files were actually read and hashed (the slow path)."""

    def __call__(self, path: str | Path) -> str:
        path = Path(path).resolve()
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"volume file not found: {path}") from None
        sidecar = self.sidecar_dir / (hashlib.sha1(str(path).encode()).hexdigest() + ".json")
        try:
            known = json.loads(sidecar.read_text())
            if known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
                return known["sha256"]
        except (FileNotFoundError, ValueError, KeyError):
            pass
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
        sha = digest.hexdigest()
        self.computed += 1
        record = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
        _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(record)))
        return sha


@dataclass(frozen=True)
class CacheEntry:
    key: str
    tensors: dict[str, torch.Tensor]
    hit: bool


class PreprocessCache:
    """Preprocessed tensors of training volumes on disk.

    `compute(sample) -> Mapping[str, Tensor]` does the real work on a miss (read the volume,
    run the model's preprocess); float tensors are stored as `store_dtype` and returned as
    float32, every other tensor as is.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        preprocess_config,
        compute: Callable[[object], Mapping[str, torch.Tensor]],
        *,
        store_dtype: str = "float16",
    ):
        if store_dtype not in _DTYPES:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"store_dtype must be one of {list(_DTYPES)}")
        self.cache_dir = Path(cache_dir)
        self.config_hash = config_hash(preprocess_config)
        self.compute = compute
        self.store_dtype = _DTYPES[store_dtype]
        self.hasher = FileHasher(self.cache_dir / "file_hashes")
        self.hits = 0
        self.misses = 0

    def key(self, sample) -> str:
        """Cache key of a manifest sample (needs `volume`, `hu_source`, slope/intercept, spacing)."""
        content = self.hasher(sample.volume)
        conversion = {
            "hu_source": sample.hu_source,
            "slope": sample.rescale_slope if sample.hu_source == "raw" else None,
            "intercept": sample.rescale_intercept if sample.hu_source == "raw" else None,
            "spacing_mm_zyx": list(sample.spacing_mm_zyx) if sample.spacing_mm_zyx else None,
        }
        recipe = config_hash({"preprocess": self.config_hash, "conversion": conversion})
        return f"{content[:32]}-{recipe}"

    def path_for(self, key: str) -> Path:
        return self.cache_dir / "prepared" / key[:2] / f"{key}.safetensors"

    def get(self, sample) -> CacheEntry:
        key = self.key(sample)
        path = self.path_for(key)
        if path.is_file():
            try:
                tensors = load_file(str(path))
                self.hits += 1
                return CacheEntry(key, _widen(tensors), hit=True)
            except Exception:
                path.unlink(missing_ok=True)  # torn or foreign file: recompute
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.compute(sample).items()}
        stored = {name: _narrow(t, self.store_dtype) for name, t in tensors.items()}
        metadata = {"volume": str(sample.volume), "preprocess_config_hash": self.config_hash}
        _atomic_write(path, lambda tmp: save_file(stored, tmp, metadata=metadata))
        self.misses += 1
        return CacheEntry(key, _widen(stored), hit=False)


def _narrow(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).contiguous() if t.is_floating_point() else t


def _widen(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.float() if t.is_floating_point() else t for n, t in tensors.items()}


class FeatureCache:
    """Frozen-encoder slice features per (prepared entry key, encoder weights hash)."""

    def __init__(self, cache_dir: str | Path, encoder_hash: str):
        self.root = Path(cache_dir) / "features" / encoder_hash
        self.hits = 0
        self.misses = 0

    def get(self, prepared_key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        path = self.root / prepared_key[:2] / f"{prepared_key}.safetensors"
        if path.is_file():
            try:
                features = load_file(str(path))["features"]
                self.hits += 1
                return features
            except Exception:
                path.unlink(missing_ok=True)
        features = compute().detach().float().cpu().contiguous()
        _atomic_write(path, lambda tmp: save_file({"features": features}, tmp))
        self.misses += 1
        return features


def module_hash(module: torch.nn.Module) -> str:
    """sha256[:16] over a module's state dict (names, shapes, bytes) and its config, if it has
    one (the same weights pooled as `cls` or `cls+mean` give different features): the feature
    cache's key."""
    digest = hashlib.sha256()
    cfg = getattr(module, "cfg", None)
    if cfg is not None:
        digest.update(repr(cfg).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
