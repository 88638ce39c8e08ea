"""The installed ctscribe version, for `ctscribe --version`, `GET /version` and the OpenAPI page.

Here, below both the CLI and the server, so that the server never imports the CLI."""

from __future__ import annotations


def package_version() -> str:
    """The installed distribution's version; "unknown" when run from a source tree not installed."""
    try:
        from importlib.metadata import version

        return version("ctscribe")
    except Exception:
        return "unknown"
