"""Stable error codes shared by the CLI and the HTTP API (DESIGN.md §3).

Every failure a user can cause with an input ends as a `CtscribeError` carrying one of
these codes and a human message; the CLI prints `error: <code>: <message>` and exits 2,
the service answers `application/problem+json` with the matching 4xx/429/503 status.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_FILE = "corrupt_file"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    NOT_CT = "not_ct"
    TOO_FEW_SLICES = "too_few_slices"
    NOT_3D = "not_3d"
    NON_UNIFORM_SPACING = "non_uniform_spacing"
    MISSING_SLICES = "missing_slices"
    GANTRY_TILT = "gantry_tilt"
    OBLIQUE_ORIENTATION = "oblique_orientation"
    AMBIGUOUS_SERIES = "ambiguous_series"
    NO_SERIES = "no_series"
    ARCHIVE_LIMITS_EXCEEDED = "archive_limits_exceeded"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_REQUEST = "invalid_request"
    QUEUE_FULL = "queue_full"
    MODEL_NOT_READY = "model_not_ready"
    TIMEOUT = "timeout"


# HTTP status per code: every bad input is a 4xx; overload is 429/503 with Retry-After.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNSUPPORTED_FORMAT: 415,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.ARCHIVE_LIMITS_EXCEEDED: 413,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.MODEL_NOT_READY: 503,
    ErrorCode.TIMEOUT: 504,
}
DEFAULT_INPUT_STATUS = 422


def http_status_for(code: ErrorCode) -> int:
    return HTTP_STATUS.get(code, DEFAULT_INPUT_STATUS)


class CtscribeError(Exception):
    """An expected failure with a stable code and a message fit for a user."""

    def __init__(self, code: ErrorCode | str, message: str):
        self.code = ErrorCode(code)
        self.message = message
        super().__init__(f"{self.code.value}: {message}")

    def to_dict(self) -> dict:
        return {"code": self.code.value, "message": self.message}


class ImagingError(CtscribeError):
    """A CT input that cannot be read, or read safely, as a chest CT volume."""
