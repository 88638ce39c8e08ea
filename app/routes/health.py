"""`/health/live`, `/health/ready` (always open), `/version`, `/metrics` (API key unless public, app/auth.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response

from app.auth import metadata_access
from app.schemas import HealthResponse, Problem, VersionResponse
from app.version import package_version
from ctscribe.errors import CtscribeError, ErrorCode

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=HealthResponse)
async def live(request: Request) -> HealthResponse:
    """The process answers (also while the model loads)."""
    service = request.app.state.service
    return HealthResponse(request_id=request.state.request_id, status="alive", ready=service.ready)


@router.get("/health/ready", response_model=HealthResponse, responses={503: {"model": Problem}})
async def ready(request: Request) -> HealthResponse:
    """200 once the model is loaded and warmed up; 503 `model_not_ready` before (and if loading failed)."""
    service = request.app.state.service
    if not service.ready:
        err = CtscribeError(ErrorCode.MODEL_NOT_READY, f"the model is {service.state}")
        err.retry_after_s = request.app.state.settings.retry_after_s  # type: ignore[attr-defined]
        raise err
    return HealthResponse(request_id=request.state.request_id, status="ready", ready=True)


@router.get("/version", response_model=VersionResponse, dependencies=[Depends(metadata_access("version"))],
            responses={401: {"model": Problem}})
async def version(request: Request) -> VersionResponse:
    service = request.app.state.service
    pipe = service.pipe
    return VersionResponse(
        request_id=request.state.request_id,
        version=package_version(),
        model_hash=getattr(pipe, "model_hash", None),
        weights_hash=getattr(pipe, "weights_hash", None),
        checkpoint=Path(request.app.state.settings.checkpoint).name,
        device=str(pipe.device) if pipe is not None else None,
        state=service.state,
    )


@router.get("/metrics", response_class=Response, dependencies=[Depends(metadata_access("metrics"))],
            responses={401: {"model": Problem}})
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
