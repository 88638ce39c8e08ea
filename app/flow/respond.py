"""Step 6, respond: the JSON answer of each endpoint (app/schemas.py). `stream=true` answers
with Server-Sent Events instead: app/flow/sse.py."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.flow.options import Options
from app.jobs import Job, JobStore
from app.schemas import InspectResponse, JobResponse


def model_response(payload: dict, response_model: type[BaseModel], request_id: str, options: Options) -> BaseModel:
    """A /report or /vqa result: the service's payload, the request id, and the warnings of the
    input and of the options (e.g. a capped `max_new_tokens`)."""
    payload.update(request_id=request_id, warnings=[*payload["warnings"], *options.warnings])
    return response_model.model_validate(payload)


def inspect_response(request_id: str, pipe: Any, summary: dict, timings_s: dict[str, float]) -> InspectResponse:
    """The `ctscribe inspect --json` summary of the upload, with the model's hashes when loaded."""
    return InspectResponse(
        request_id=request_id,
        model_hash=getattr(pipe, "model_hash", None),
        weights_hash=getattr(pipe, "weights_hash", None),
        input=summary,
        warnings=summary.get("warnings", []),
        timings_s=timings_s,
    )


def job_response(job: Job, store: JobStore, request_id: str) -> JobResponse:
    """A job's status, and its result or problem document once finished."""
    return JobResponse(request_id=request_id, **job.to_dict(store.ttl_s))


def job_accepted(job: Job, store: JobStore, request_id: str) -> JSONResponse:
    """202 with the job's status and where to poll it (`Location`)."""
    body = job_response(job, store, request_id)
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job.id}"})
