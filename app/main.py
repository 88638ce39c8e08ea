"""`create_app(settings, pipeline=None)`: the FastAPI app factory.

The model loads once, in the lifespan, on a thread (so `/health/live` answers while it
loads; `/health/ready` is 503 until it is loaded and warmed up). `pipeline` lets tests pass
a prebuilt pipeline (or a zero-argument callable that builds one). Logs carry the request
id, route, status and duration — never file names, patient identifiers or tag values.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.errors import install_error_handlers
from app.jobs import JobStore
from app.metrics import Metrics
from app.routes import docs, health, inspect, jobs, report
from app.service import InferenceService
from app.settings import Settings
from app.version import package_version

log = logging.getLogger("ctscribe.app")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """Pure ASGI (so streaming responses pass through untouched): request id, access log, metrics."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(route=path, status=str(status)).inc()
            log.info("request_id=%s method=%s route=%s status=%s duration_s=%.3f",
                     request_id, scope.get("method"), path, status, time.perf_counter() - start)


def create_app(settings: Settings | None = None, pipeline: Any = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    service = InferenceService(settings, pipeline=pipeline, metrics=metrics)
    job_store = JobStore(settings.max_jobs, settings.job_ttl_s, settings.retry_after_s,
                         max_jobs_per_key=settings.max_jobs_per_key, path=settings.jobs_db)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await job_store.close()
            await service.stop()

    app = FastAPI(
        title="ctscribe",
        description="Chest CT findings reports and visual question answering (SAMF + Ao2D). "
        "Research use only; not for clinical decision-making.",
        version=package_version(),
        lifespan=lifespan,
        # Served by app/routes/docs.py instead, behind the API key unless made public.
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    app.state.jobs = job_store
    install_error_handlers(app)
    for module in (report, inspect, jobs, health, docs):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
        )
    app.add_middleware(RequestContext, metrics=metrics)
    return app
