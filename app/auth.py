"""Who is calling: the Bearer API key check, and which endpoints it guards.

With `CTSCRIBE_API_KEYS` set, every endpoint needs a key except the health probes (an
orchestrator polls them without credentials) and the metadata endpoints named in
`CTSCRIBE_PUBLIC_ENDPOINTS` (`version`, `metrics`, `docs`): by default none, because
`/version` names the checkpoint, its hashes and the device, `/metrics` the load and traffic,
and `/docs` + `/openapi.json` the whole surface. Without keys nothing is guarded (and the
service may only bind to loopback, `Settings.check_bind`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request

from app.settings import Settings

ANONYMOUS = "anonymous"


def api_key(request: Request) -> str:
    """Per-key identity for limits (a hash, never the key); 401 when keys are configured and missing."""
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return ANONYMOUS
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        for key in settings.api_keys:
            if hmac.compare_digest(token.encode(), key.encode()):
                return key_id(key)
    raise HTTPException(401, "missing or invalid API key (Authorization: Bearer <key>)",
                        headers={"WWW-Authenticate": "Bearer"})


def key_id(key: str) -> str:
    """The stable, non-secret name of an API key: the first 12 hex digits of its sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def metadata_access(endpoint: str) -> Callable[[Request], None]:
    """A dependency for a metadata endpoint (`version`, `metrics`, `docs`): open when the
    settings list it in `public_endpoints`, otherwise the API key check."""

    def check(request: Request) -> None:
        settings: Settings = request.app.state.settings
        if endpoint not in settings.public_endpoints:
            api_key(request)

    return check
