"""`POST /inspect`: read and validate an upload without the model (a dry run): app/flow/inspect_request.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.auth import api_key
from app.flow.fields import INPUT_PROPERTIES, multipart_body
from app.flow.inspect_request import inspect_request
from app.routes.responses import ERRORS
from app.schemas import InspectResponse

router = APIRouter(tags=["input"])


@router.post("/inspect", response_model=InspectResponse, responses=ERRORS,
             openapi_extra=multipart_body(base=INPUT_PROPERTIES))
async def inspect(request: Request, key: str = Depends(api_key)) -> InspectResponse:
    """The `ctscribe inspect --json` summary of the upload: format, geometry, HU, series, warnings."""
    return await inspect_request(request, key)
