"""`POST /jobs`, `GET /jobs/{id}`, `DELETE /jobs/{id}`: the /report and /vqa steps without holding
a connection. Storage, quotas and expiry: app/jobs.py.

Submitting runs upload -> options in the request (so a bad field is still a 400 at once), then
hands admission -> prepare -> generate to the job, which waits for a slot instead of being
refused; the result is the response JSON that /report or /vqa would have answered.
"""

from __future__ import annotations

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse

from app.flow.options import Options
from app.flow.respond import job_accepted, job_response, model_response
from app.flow.tasks import job_task, read_options
from app.flow.upload import receive
from app.jobs import Job, JobStore
from app.schemas import JobResponse, ReportResponse, VqaResponse
from app.service import InferenceService

RESPONSE_MODELS = {"report": ReportResponse, "vqa": VqaResponse}
NO_SUCH_JOB = "no such job (unknown, expired, or created with another API key)"


async def submit_job(request: Request, key: str) -> JSONResponse:
    service: InferenceService = request.app.state.service
    store: JobStore = request.app.state.jobs
    service.require_ready()
    store.check_room(key)  # before the upload: a key over its quota sends no body for nothing
    upload = await receive(request, key)
    try:
        options = Options(upload)
        name, task = job_task(options, request.app.state.settings)
        source = upload.source()
        reading = read_options(options, request.app.state.settings)
    except BaseException:
        upload.cleanup()
        raise

    async def work(job: Job) -> dict:
        with upload:
            async with await service.admit_wait(key) as ticket:
                store.set_running(job)
                prepared = await service.prepare(source, reading, upload.dir)
                upload.cleanup()
                payload = await service.run(prepared, task, ticket)
        return model_response(payload, RESPONSE_MODELS[name], job.request_id, options).model_dump(mode="json")

    try:  # checks the quota again: other requests may have taken the room during this upload
        job = store.submit(name, key, request.state.request_id, work, on_done=upload.cleanup)
    except BaseException:
        upload.cleanup()
        raise
    return job_accepted(job, store, request.state.request_id)


def job_status(request: Request, job_id: str, key: str) -> JobResponse:
    store: JobStore = request.app.state.jobs
    job = store.get(job_id, key)
    if job is None:
        raise HTTPException(404, NO_SUCH_JOB)
    return job_response(job, store, request.state.request_id)


def delete_job(request: Request, job_id: str, key: str) -> Response:
    """Drop a job (cancelling it if unfinished)."""
    if not request.app.state.jobs.delete(job_id, key):
        raise HTTPException(404, NO_SUCH_JOB)
    return Response(status_code=204)
