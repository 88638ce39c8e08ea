"""Service settings, read from `CTSCRIBE_*` environment variables (pydantic-settings).

Every limit the service enforces lives here, with its unit in its name. Lists
(`CTSCRIBE_API_KEYS`, `CTSCRIBE_CORS_ORIGINS`) are comma-separated or a JSON list.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ctscribe.errors import CtscribeError, ErrorCode
from model.bundled_weights import DEMO_CHECKPOINT

DISCLAIMER = "Research use only; not for clinical decision-making."
MIN_API_KEY_CHARS = 16
"""Shortest accepted API key: 16 random URL-safe characters are ~96 bits."""
PUBLIC_ENDPOINT_NAMES = ("version", "metrics", "docs")
"""Metadata endpoints `public_endpoints` may open to callers without a key."""


def _split_list(value: object) -> object:
    """Accept `a,b`, a JSON list string, or a list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTSCRIBE_", extra="ignore", frozen=True)

    checkpoint: str = str(DEMO_CHECKPOINT)
    """Checkpoint directory or hub id for `model.load`; `tiny` builds the random tiny preset (tests)."""
    device: str = "auto"
    """torch device: `auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1`, ..."""
    host: str = "127.0.0.1"
    """Bind address for `ctscribe serve`."""
    port: int = 8000
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Accepted Bearer tokens, each at least `MIN_API_KEY_CHARS` (16) printable characters without
    spaces (e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`). Empty: no auth,
    and only a loopback bind is allowed."""
    allow_unauthenticated: bool = False
    """Permit a non-loopback bind without API keys (behind an authenticating proxy)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Exact origins allowed by CORS; empty disables CORS. No wildcards."""
    public_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Metadata endpoints served without an API key when `api_keys` is set: any of `version`
    (checkpoint name, hashes, device), `metrics` (Prometheus), `docs` (`/docs`, `/redoc`,
    `/openapi.json`). Default none: all need a key. `/health/live` and `/health/ready` are always open."""

    max_upload_mb: float = 2048.0
    """Whole request body, in MiB, enforced while streaming."""
    max_part_mb: float = 1024.0
    """One uploaded file, in MiB."""
    max_files: int = 4000
    """Files in one multipart upload (a DICOM series sent file by file)."""
    max_field_kb: float = 64.0
    """One non-file form field, in KiB."""
    upload_timeout_s: float = 600.0
    """Wall-clock limit for receiving one request body; past it -> 408 timeout. A body being
    received holds no admission slot (requests are admitted once their upload is complete)."""
    upload_min_bytes_per_s: float = 32768.0
    """After `upload_grace_s`, a body must arrive at least this fast on average, in bytes/s;
    slower -> 408 timeout (a client trickling bytes is cut off). 0 disables the check."""
    upload_grace_s: float = 10.0
    """Seconds of an upload before `upload_min_bytes_per_s` applies."""
    max_concurrent_uploads: int = 128
    """Request bodies being received at once, all keys together (4x `queue_size`); more -> 503
    queue_full before the body is read. Each holds up to `max_upload_mb` of temp files, so this
    bounds the disk that uploads in progress can take."""
    max_concurrent_uploads_per_key: int = 32
    """Request bodies one API key (or the anonymous caller) may be sending at once; more -> 429
    queue_full. One key's slow uploads cannot take every upload slot."""
    max_new_tokens: int = 512
    """Cap on the `max_new_tokens` a request may ask for."""

    queue_size: int = 32
    """Requests admitted at once (decoding, queued and running); more -> 503 queue_full."""
    per_key_concurrency: int = 8
    """Requests one API key (or the anonymous caller) may have admitted; more -> 429 queue_full."""
    request_timeout_s: float = 300.0
    """From admission (the upload complete) to result; past it -> 504 timeout, and the request's
    generation is cancelled."""
    batch_wait_ms: float = 10.0
    """How long the batcher waits for more requests to join a model batch."""
    max_batch: int = 4
    """Requests run in one `pipe.report` / `pipe.answer` / `pipe.choose` call."""
    retry_after_s: int = 2
    """`Retry-After` sent with 429/503."""

    job_ttl_s: float = 3600.0
    """Finished job results are kept this long."""
    max_jobs: int = 256
    """Jobs kept at once, all keys together (queued, running and finished); more -> 503 queue_full."""
    max_jobs_per_key: int = 32
    """Jobs one API key (or the anonymous caller) may keep at once (queued, running, and finished
    until they expire or are deleted); more -> 429 queue_full. One key cannot fill the store."""
    jobs_db: Path | None = None
    """SQLite file holding jobs and their results, so finished results survive a restart (created
    0600; one server per file). None: in memory, and every job is lost when the server stops."""

    decode_workers: int = 2
    """Worker processes that decode uploads (a hostile file kills a worker, not the server)."""
    decode_memory_mb: int = 6144
    """Address space a decode worker may add on top of its idle footprint, in MiB."""
    decode_time_s: float = 120.0
    """Wall-clock limit for decoding one upload; past it the worker is killed."""
    max_voxels: int = 512 * 512 * 2048
    """Uploads with more voxels are refused before their pixels are read."""

    upload_dir: Path | None = None
    """Parent of the private per-request temp dirs; None = the system temp dir."""
    warmup: bool = True
    """Run one tiny generation at startup so the first request does not pay for lazy init."""
    keep_alive_s: float = 75.0
    """Idle keep-alive of client connections. Longer than common proxy/load-balancer idle timeouts
    (60 s), so the server never closes a connection a client is about to reuse."""
    fast_decode: bool = True
    """Serve the model in its inference form (`Pipeline.for_inference`): LoRA merged into the
    decoder, static-cache decoding (+ CUDA graphs on a GPU), the decoder in `decode_dtype`."""
    decode_dtype: Literal["auto", "config", "float32", "bfloat16", "int8"] = "auto"
    """Decoder dtype with `fast_decode`: auto (weight-only int8 on a CPU with native bf16,
    AVX512-BF16 / AMX; the checkpoint's elsewhere) | config | float32 | bfloat16 | int8
    (model/runtime.py; README "Speed on a CPU")."""
    log_level: str = "info"

    @field_validator("api_keys", "cors_origins", "public_endpoints", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("api_keys")
    @classmethod
    def _strong_keys(cls, value: list[str]) -> list[str]:
        # The message names the key by position only: a settings error must never print a key.
        for i, key in enumerate(value):
            if len(key) < MIN_API_KEY_CHARS:
                raise ValueError(f"API key #{i + 1} has {len(key)} characters; at least {MIN_API_KEY_CHARS} are "
                                 "required (a short key can be guessed)")
            if not key.isprintable() or any(c.isspace() for c in key):
                raise ValueError(f"API key #{i + 1} holds spaces or control characters")
        return value

    @field_validator("public_endpoints")
    @classmethod
    def _known_endpoints(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(PUBLIC_ENDPOINT_NAMES))
        if unknown:
            raise ValueError(f"unknown endpoint name(s) {unknown}; choose from {list(PUBLIC_ENDPOINT_NAMES)}")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if any("*" in origin for origin in value):
            raise ValueError("cors_origins must list exact origins; '*' is not allowed")
        return value

    @field_validator("queue_size", "per_key_concurrency", "max_batch", "decode_workers", "max_jobs",
                     "max_jobs_per_key", "max_concurrent_uploads", "max_concurrent_uploads_per_key")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be >= 1")
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def check_bind(self, host: str | None = None) -> None:
        """Refuse to expose an unauthenticated service beyond loopback."""
        host = host or self.host
        if self.api_keys or self.allow_unauthenticated or is_loopback(host):
            return
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST,
            f"refusing to bind {host} without API keys: set CTSCRIBE_API_KEYS "
            "(or CTSCRIBE_ALLOW_UNAUTHENTICATED=true behind an authenticating proxy)",
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
