"""`POST /inspect`: read and validate an upload without the model (a dry run)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from app.routes._common import (
    INPUT_PROPERTIES,
    Options,
    api_key,
    input_read_options,
    multipart_body,
    receive_counted_upload,
)
from app.routes.report import ERRORS
from app.schemas import InspectResponse

router = APIRouter(tags=["input"])


@router.post("/inspect", response_model=InspectResponse, responses=ERRORS,
             openapi_extra=multipart_body(base=INPUT_PROPERTIES))
async def inspect(request: Request, key: str = Depends(api_key)) -> InspectResponse:
    """The `ctscribe inspect --json` summary of the upload: format, geometry, HU, series, warnings."""
    service = request.app.state.service
    service.admission.check(key)  # refused anyway: say so before the body (takes no slot)
    start = time.perf_counter()
    with await receive_counted_upload(request, key) as upload:
        upload_s = time.perf_counter() - start
        read_options = input_read_options(service, Options(upload).only(INPUT_PROPERTIES))
        with service.admit(key):  # admitted once the upload is complete: a slow upload holds no slot
            start = time.perf_counter()
            summary = await service.inspect(upload.source(), read_options, upload.dir)
    pipe = service.pipe
    return InspectResponse(
        request_id=request.state.request_id,
        model_hash=getattr(pipe, "model_hash", None),
        weights_hash=getattr(pipe, "weights_hash", None),
        input=summary,
        warnings=summary.get("warnings", []),
        timings_s={"upload": upload_s, "decode": time.perf_counter() - start},
    )
