"""`POST /inspect`, top to bottom: upload -> options -> admission -> decode -> respond. No model:
it answers also while the model loads."""

from __future__ import annotations

import time

from fastapi import Request

from app.flow.fields import INPUT_PROPERTIES
from app.flow.options import Options
from app.flow.respond import inspect_response
from app.flow.tasks import read_options
from app.flow.upload import receive
from app.schemas import InspectResponse
from app.service import InferenceService


async def inspect_request(request: Request, key: str) -> InspectResponse:
    service: InferenceService = request.app.state.service
    service.admission.check(key)  # refused anyway: say so before the body (takes no slot)
    with await receive(request, key) as upload:
        reading = read_options(Options(upload).only(INPUT_PROPERTIES), request.app.state.settings)
        with service.admit(key):  # admitted once the upload is complete: a slow upload holds no slot
            start = time.perf_counter()
            summary = await service.inspect(upload.source(), reading, upload.dir)
    timings_s = {"upload": upload.receive_s, "decode": time.perf_counter() - start}
    return inspect_response(request.state.request_id, service.pipe, summary, timings_s)
