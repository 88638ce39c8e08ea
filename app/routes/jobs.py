"""`POST /jobs` (202 + id), `GET /jobs/{id}`, `DELETE /jobs/{id}`: app/flow/job_request.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from app.auth import api_key
from app.flow import job_request
from app.flow.fields import JOB_FIELDS, multipart_body
from app.routes.responses import ERRORS, NOT_FOUND
from app.schemas import JobResponse

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=202, response_model=JobResponse, responses=ERRORS,
             openapi_extra=multipart_body(JOB_FIELDS))
async def submit_job(request: Request, key: str = Depends(api_key)) -> JSONResponse:
    """Queue a report or vqa job; poll `GET /jobs/{job_id}` (the `Location` header)."""
    return await job_request.submit_job(request, key)


@router.get("/jobs/{job_id}", response_model=JobResponse, responses=NOT_FOUND)
async def get_job(job_id: str, request: Request, key: str = Depends(api_key)) -> JobResponse:
    """Status, and the result or problem document once finished (kept for the job TTL)."""
    return job_request.job_status(request, job_id, key)


@router.delete("/jobs/{job_id}", status_code=204, responses=NOT_FOUND)
async def delete_job(job_id: str, request: Request, key: str = Depends(api_key)) -> Response:
    """Drop a job and its result now (cancelling it if unfinished); frees its place in the key's quota."""
    return job_request.delete_job(request, job_id, key)
