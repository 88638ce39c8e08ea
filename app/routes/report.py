"""`POST /report` and `POST /vqa`: upload -> decode -> prepare -> batched model call.

With `stream=true` the answer comes as Server-Sent Events: `event: delta` with
`{"text": ...}` as tokens are decoded, then one `event: result` with the whole JSON
response (or `event: error` with a problem document). Input errors are still plain 4xx
problem responses: the stream only starts once the CT has been read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.routes._common import (
    REPORT_FIELDS,
    VQA_FIELDS,
    api_key,
    cancel_on_disconnect,
    error_event,
    multipart_body,
    receive_and_prepare,
    report_task,
    sse,
    vqa_task,
)
from app.schemas import Problem, ReportResponse, VqaResponse

router = APIRouter(tags=["model"])
ERRORS = {code: {"model": Problem} for code in (400, 401, 413, 415, 422, 429, 503, 504)}

async def _model_request(request: Request, key: str, make_task: Callable, model: type[BaseModel]):
    service = request.app.state.service
    prepared, task, options, ticket = await receive_and_prepare(request, key, make_task)
    try:
        stream = options.flag("stream")
    except BaseException:
        ticket.release()
        raise
    request_id = request.state.request_id

    def finish(payload: dict) -> BaseModel:
        payload.update(request_id=request_id, warnings=[*payload["warnings"], *options.warnings])
        return model.model_validate(payload)

    if stream:
        return _stream(service, prepared, task, ticket, finish, request_id)
    try:
        payload = await cancel_on_disconnect(request, service.run(prepared, task, ticket))
    finally:
        ticket.release()
    return finish(payload)


def _stream(service, prepared, task, ticket, finish, request_id) -> StreamingResponse:
    deltas: asyncio.Queue = asyncio.Queue()
    done = object()

    async def run():
        # Owns the ticket: it is released even if the client never reads the stream.
        try:
            return finish(await service.run(prepared, task, ticket, on_text=deltas.put_nowait))
        finally:
            ticket.release()
            deltas.put_nowait(done)

    job = asyncio.create_task(run())

    async def events():
        try:
            while (item := await deltas.get()) is not done:
                yield sse("delta", {"text": item})
            try:
                result = await job
            except Exception as err:
                yield error_event(err, request_id)
            else:
                yield sse("result", result.model_dump(mode="json"))
        finally:
            job.cancel()  # the client went away: drop the queued work

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.post("/report", response_model=ReportResponse, responses=ERRORS, openapi_extra=multipart_body(REPORT_FIELDS))
async def report(request: Request, key: str = Depends(api_key)):
    """Findings report, the 18 label probabilities and key slices for one CT."""
    return await _model_request(request, key, report_task, ReportResponse)


@router.post("/vqa", response_model=VqaResponse, responses=ERRORS,
             openapi_extra=multipart_body(VQA_FIELDS, required=("question",)))
async def vqa(request: Request, key: str = Depends(api_key)):
    """Answer a question: free text, or the most likely of 2-4 `choices`."""
    return await _model_request(request, key, vqa_task, VqaResponse)
