"""`/openapi.json`, `/docs` (Swagger UI) and `/redoc`, behind the API key unless `docs` is in
`CTSCRIBE_PUBLIC_ENDPOINTS` (app/auth.py). FastAPI's own unguarded routes are switched off in
`create_app`; these serve the same pages."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from app.auth import metadata_access

OPENAPI_URL = "/openapi.json"
router = APIRouter(dependencies=[Depends(metadata_access("docs"))], include_in_schema=False)


@router.get(OPENAPI_URL)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - API")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - API")
