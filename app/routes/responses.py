"""The problem responses the endpoints document in OpenAPI (app/errors.py writes them)."""

from __future__ import annotations

from app.schemas import Problem

ERRORS = {code: {"model": Problem} for code in (400, 401, 413, 415, 422, 429, 503, 504)}
"""Of the endpoints that take an upload."""
NOT_FOUND = {404: {"model": Problem}}
