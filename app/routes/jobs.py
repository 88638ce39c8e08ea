"""`POST /jobs` (202 + id), `GET /jobs/{id}`, `DELETE /jobs/{id}`: the report / vqa flow without
holding a connection. Storage, quotas and expiry: app/jobs.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from app.routes._common import (
    REPORT_FIELDS,
    VQA_FIELDS,
    Options,
    api_key,
    input_read_options,
    multipart_body,
    receive_counted_upload,
    report_task,
    vqa_task,
)
from app.routes.report import ERRORS
from app.schemas import JobResponse, ReportResponse, VqaResponse
from ctscribe.errors import CtscribeError, ErrorCode

router = APIRouter(tags=["jobs"])
TASKS = {"report": (report_task, ReportResponse), "vqa": (vqa_task, VqaResponse)}
JOB_FIELDS = {"task": {"type": "string", "enum": list(TASKS), "default": "report"}, **REPORT_FIELDS, **VQA_FIELDS}


@router.post("/jobs", status_code=202, response_model=JobResponse, responses=ERRORS,
             openapi_extra=multipart_body(JOB_FIELDS))
async def submit_job(request: Request, key: str = Depends(api_key)):
    """Queue a report or vqa job; poll `GET /jobs/{job_id}` (the `Location` header)."""
    service, settings, store = request.app.state.service, request.app.state.settings, request.app.state.jobs
    service._require_ready()
    store.check_room(key)  # before the upload: a key over its quota sends no body for nothing
    upload = await receive_counted_upload(request, key)
    try:
        options = Options(upload)
        name = options.str("task", 16) or "report"
        if name not in TASKS:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, "task: one of report, vqa")
        make_task, response_model = TASKS[name]
        task = make_task(options, settings, extra_fields=("task",))
        source = upload.source()
        read_options = input_read_options(service, options)
    except BaseException:
        upload.cleanup()
        raise

    async def work(job) -> dict:
        with upload:
            async with await service.admit_wait(key) as ticket:
                store.set_running(job)
                prepared = await service.prepare(source, read_options, upload.dir)
                upload.cleanup()
                payload = await service.run(prepared, task, ticket)
        payload.update(request_id=job.request_id, warnings=[*payload["warnings"], *options.warnings])
        return response_model.model_validate(payload).model_dump(mode="json")

    try:  # checks the quota again: other requests may have taken the room during this upload
        job = store.submit(name, key, request.state.request_id, work, on_done=upload.cleanup)
    except BaseException:
        upload.cleanup()
        raise
    body = JobResponse(request_id=request.state.request_id, **job.to_dict(store.ttl_s))
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job.id}"})


@router.get("/jobs/{job_id}", response_model=JobResponse, responses={404: {"model": ERRORS[400]["model"]}})
async def get_job(job_id: str, request: Request, key: str = Depends(api_key)) -> JobResponse:
    """Status, and the result or problem document once finished (kept for the job TTL)."""
    store = request.app.state.jobs
    job = store.get(job_id, key)
    if job is None:
        raise HTTPException(404, "no such job (unknown, expired, or created with another API key)")
    return JobResponse(request_id=request.state.request_id, **job.to_dict(store.ttl_s))


@router.delete("/jobs/{job_id}", status_code=204, responses={404: {"model": ERRORS[400]["model"]}})
async def delete_job(job_id: str, request: Request, key: str = Depends(api_key)) -> Response:
    """Drop a job and its result now (cancelling it if unfinished); frees its place in the key's quota."""
    if not request.app.state.jobs.delete(job_id, key):
        raise HTTPException(404, "no such job (unknown, expired, or created with another API key)")
    return Response(status_code=204)
