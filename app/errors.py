"""Every error the service answers is `application/problem+json` (RFC 9457).

Body: `{type, title, status, detail, code, request_id}`. `code` is one of the DESIGN codes
(`ctscribe.errors.ErrorCode`) for anything a caller can cause; overload (429/503) carries
`Retry-After`. A 500 (`internal_error`) means a bug in ctscribe, never a bad input: files
are decoded in a worker process whose unexpected failures are already `corrupt_file`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ctscribe.errors import CtscribeError, ErrorCode, http_status_for

PROBLEM_JSON = "application/problem+json"
INTERNAL_ERROR = "internal_error"

log = logging.getLogger("ctscribe.app")

TITLES: dict[str, str] = {
    "unsupported_format": "Unsupported file format",
    "corrupt_file": "Corrupt or unreadable file",
    "unsupported_transfer_syntax": "Unsupported DICOM transfer syntax",
    "not_ct": "Not a CT",
    "too_few_slices": "Too few slices",
    "not_3d": "Not a 3D volume",
    "non_uniform_spacing": "Non-uniform slice spacing",
    "missing_slices": "Missing slices",
    "gantry_tilt": "Gantry tilt",
    "oblique_orientation": "Oblique orientation",
    "ambiguous_series": "Ambiguous series",
    "no_series": "No series",
    "archive_limits_exceeded": "Archive limits exceeded",
    "payload_too_large": "Payload too large",
    "invalid_request": "Invalid request",
    "queue_full": "Service over capacity",
    "model_not_ready": "Model not ready",
    "timeout": "Timed out",
    INTERNAL_ERROR: "Internal error",
}

# Overload is retryable: how soon, when the raiser did not say.
DEFAULT_RETRY_AFTER_S = 2


class Overloaded(CtscribeError):
    """Over capacity: per API key (429) or for the whole service (503); retry later."""

    def __init__(self, message: str, scope: str = "global", retry_after_s: int = DEFAULT_RETRY_AFTER_S):
        super().__init__(ErrorCode.QUEUE_FULL, message)
        self.scope = scope
        self.retry_after_s = retry_after_s


class UploadTimeout(CtscribeError):
    """The request body did not arrive in time (deadline or minimum rate): 408, code `timeout`.

    The client was too slow, not the service (a 504), so the status differs; the code stays one
    of the designed set."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.TIMEOUT, message)


def status_for(err: CtscribeError) -> int:
    if isinstance(err, Overloaded):
        return 429 if err.scope == "key" else 503
    if isinstance(err, UploadTimeout):
        return 408
    return http_status_for(err.code)


def problem_body(status: int, code: str, detail: str, request_id: str | None) -> dict:
    return {
        "type": f"urn:ctscribe:error:{code}",
        "title": TITLES.get(code, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def problem_response(
    request: Request, status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.rejections.labels(code=code).inc()
    return JSONResponse(
        problem_body(status, code, detail, request_id_of(request)),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_for_error(request: Request, err: CtscribeError) -> JSONResponse:
    status = status_for(err)
    headers = None
    if status in (429, 503):
        retry = getattr(err, "retry_after_s", DEFAULT_RETRY_AFTER_S)
        headers = {"Retry-After": str(int(retry))}
    elif status == 408:
        headers = {"Connection": "close"}  # the rest of the body is never read
    return problem_response(request, status, err.code.value, err.message, headers)


def _validation_detail(exc: RequestValidationError) -> str:
    # Field locations and messages only: never echo the submitted values.
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CtscribeError)
    async def _ctscribe(request: Request, exc: CtscribeError) -> JSONResponse:
        return problem_for_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request, 400, ErrorCode.INVALID_REQUEST.value, _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing-level errors (401, 404, 405, 413) keep their status; the code stays a DESIGN code.
        code = ErrorCode.PAYLOAD_TOO_LARGE.value if exc.status_code == 413 else ErrorCode.INVALID_REQUEST.value
        detail = exc.detail if isinstance(exc.detail, str) else "invalid request"
        return problem_response(request, exc.status_code, code, detail, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error request_id=%s type=%s", request_id_of(request), type(exc).__name__,
                  exc_info=exc)
        return problem_response(request, 500, INTERNAL_ERROR, "internal error; the request id identifies it in the logs")
