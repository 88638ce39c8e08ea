"""`POST /report` and `POST /vqa` (JSON, or Server-Sent Events with `stream=true`): app/flow/model_request.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.auth import api_key
from app.flow.fields import REPORT_FIELDS, VQA_FIELDS, multipart_body
from app.flow.model_request import model_request
from app.flow.tasks import report_task, vqa_task
from app.routes.responses import ERRORS
from app.schemas import ReportResponse, VqaResponse

router = APIRouter(tags=["model"])


@router.post("/report", response_model=ReportResponse, responses=ERRORS, openapi_extra=multipart_body(REPORT_FIELDS))
async def report(request: Request, key: str = Depends(api_key)):
    """Findings report, the 18 label probabilities and key slices for one CT."""
    return await model_request(request, key, report_task, ReportResponse)


@router.post("/vqa", response_model=VqaResponse, responses=ERRORS,
             openapi_extra=multipart_body(VQA_FIELDS, required=("question",)))
async def vqa(request: Request, key: str = Depends(api_key)):
    """Answer a question: free text, or the most likely of 2-4 `choices`."""
    return await model_request(request, key, vqa_task, VqaResponse)
