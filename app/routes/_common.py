"""What the route modules share: auth, option fields, the upload -> model flow, SSE framing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from app.auth import ANONYMOUS, api_key  # noqa: F401  (the routes' auth dependency)
from app.errors import problem_body, status_for
from app.admission import Ticket
from app.service import InferenceService, PreparedInput, ReportTask, VqaTask
from app.settings import Settings
from app.uploads import MIB, Upload, UploadLimits, receive_upload
from imaging.errors import CtscribeError, ErrorCode

MAX_QUESTION_CHARS = 2000
MAX_CHOICE_CHARS = 500
MAX_UID_CHARS = 128
# Multipart is parsed by app.uploads (streamed, size-capped), so the body is declared here for /docs.
OPTION_PROPERTIES = {
    "series_instance_uid": {"type": "string", "maxLength": MAX_UID_CHARS,
                            "description": "DICOM SeriesInstanceUID (or its uid_hash) to use"},
    "max_new_tokens": {"type": "integer", "minimum": 1, "description": "Capped by the server setting"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2,
                    "description": "0 = greedy; otherwise at least 1e-4"},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "stream": {"type": "boolean", "description": "Server-Sent Events: `delta` events then `result`"},
    "options": {"type": "string", "description": "The same options as one JSON object"},
}


def multipart_body(extra: dict[str, Any] | None = None, required: tuple[str, ...] = ()) -> dict:
    properties = {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "One NIfTI, one zip, or several DICOM files"},
        **OPTION_PROPERTIES,
        **(extra or {}),
    }
    schema = {"type": "object", "properties": properties, "required": ["file", *required]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def upload_limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        max_upload_bytes=int(settings.max_upload_mb * MIB),
        max_part_bytes=int(settings.max_part_mb * MIB),
        max_files=settings.max_files,
        max_field_bytes=int(settings.max_field_kb * 1024),
        timeout_s=settings.upload_timeout_s,
        min_bytes_per_s=settings.upload_min_bytes_per_s,
        grace_s=settings.upload_grace_s,
    )


def _bad(message: str) -> CtscribeError:
    return CtscribeError(ErrorCode.INVALID_REQUEST, message)


class Options:
    """Option fields from the multipart form, or from one JSON `options` field (form wins)."""

    def __init__(self, upload: Upload):
        self.values: dict[str, Any] = {}
        raw = upload.field("options")
        if raw:
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                raise _bad("options: not valid JSON") from None
            if not isinstance(parsed, dict):
                raise _bad("options: expected a JSON object")
            self.values.update(parsed)
        for name, values in upload.fields.items():
            if name != "options":
                self.values[name] = values if name in ("choices", "choice") else values[-1]
        self.warnings: list[str] = []

    def str(self, name: str, max_chars: int) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _bad(f"{name}: expected a string")
        if len(value) > max_chars:
            raise _bad(f"{name}: longer than {max_chars} characters")
        return value

    def number(self, name: str, kind: type, lo: float, hi: float) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            number = kind(value) if not isinstance(value, str) or kind is float else int(value.strip())
        except (TypeError, ValueError):
            raise _bad(f"{name}: expected {'an integer' if kind is int else 'a number'}") from None
        if kind is float and number != number:  # NaN
            raise _bad(f"{name}: not a number")
        if not lo <= number <= hi:
            raise _bad(f"{name}: must be between {lo:g} and {hi:g}")
        return number

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if value is None or isinstance(value, bool):
            return bool(value)
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("", "0", "false", "no", "off"):
            return False
        raise _bad(f"{name}: expected true or false")

    def choices(self) -> tuple[str, ...] | None:
        value = self.values.get("choices", self.values.get("choice"))
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if len(items) == 1 and isinstance(items[0], str) and items[0].lstrip().startswith("["):
            try:
                items = json.loads(items[0])
            except json.JSONDecodeError:
                raise _bad("choices: not a valid JSON list") from None
        if not isinstance(items, list) or not all(isinstance(c, str) and c.strip() for c in items):
            raise _bad("choices: expected a list of non-empty strings")
        if not 2 <= len(items) <= 4:
            raise _bad("choices: give 2 to 4 options")
        if any(len(c) > MAX_CHOICE_CHARS for c in items):
            raise _bad(f"choices: each at most {MAX_CHOICE_CHARS} characters")
        return tuple(c.strip() for c in items)

    def generation(self, settings: Settings) -> Any:
        import model

        requested = self.number("max_new_tokens", int, 1, 2**31 - 1)
        max_new_tokens = min(requested or settings.max_new_tokens, settings.max_new_tokens)
        if requested and requested > settings.max_new_tokens:
            self.warnings.append(f"max_new_tokens capped to {settings.max_new_tokens}")
        defaults = model.GenerationParams()
        temperature = self.number("temperature", float, 0.0, 2.0)
        top_p = self.number("top_p", float, 1e-6, 1.0)
        return model.GenerationParams(
            max_new_tokens=max_new_tokens,
            temperature=defaults.temperature if temperature is None else temperature,
            top_p=defaults.top_p if top_p is None else top_p,
            seed=self.number("seed", int, 0, 2**32 - 1),
        )


def report_task(options: Options, settings: Settings) -> ReportTask:
    from model.consistency import MODES

    consistency = options.str("consistency", 16) or "warn"
    if consistency not in MODES:
        raise _bad(f"consistency: one of {', '.join(MODES)}")
    return ReportTask(params=options.generation(settings), consistency=consistency)


def vqa_task(options: Options, settings: Settings) -> VqaTask:
    question = options.str("question", MAX_QUESTION_CHARS)
    if not question or not question.strip():
        raise _bad("question: required")
    choices = options.choices()
    mode = options.str("mode", 16) or "auto"
    if mode not in ("auto", "free", "choice"):
        raise _bad("mode: one of auto, free, choice")
    if mode == "choice" and not choices:
        raise _bad("mode choice needs 2 to 4 choices")
    if mode == "free":
        choices = None
    return VqaTask(question=question.strip(), choices=choices, params=options.generation(settings))


async def cancel_on_disconnect(request: Request, work: Awaitable[Any], poll_s: float = 0.25) -> Any:
    """Await `work`, cancelling it if the client goes away (the body must already be read)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while not task.done():
            if await request.is_disconnected():
                task.cancel()
                return
            await asyncio.sleep(poll_s)

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise _bad("client disconnected") from None
        raise
    finally:
        watcher.cancel()


async def receive_and_prepare(
    request: Request, key: str, make_task: Callable[[Options, Settings], ReportTask | VqaTask]
) -> tuple[PreparedInput, ReportTask | VqaTask, Options, Ticket]:
    """Upload -> options -> admission -> decode (worker process) -> pipe.prepare.

    The request is admitted only once its body is complete and its options are valid: a slow
    upload holds no slot (it is bounded by the upload deadline and minimum rate instead). The
    caller owns the returned ticket; the upload is always deleted."""
    service: InferenceService = request.app.state.service
    settings: Settings = request.app.state.settings
    service._require_ready()  # before reading a large body the model could not use
    service.admission.check(key)  # likewise when it would be refused anyway (takes no slot)
    start = time.perf_counter()
    with await receive_upload(request, upload_limits(settings), settings.upload_dir) as upload:
        upload_s = time.perf_counter() - start
        options = Options(upload)
        task = make_task(options, settings)
        read_options = service.read_options(options.str("series_instance_uid", MAX_UID_CHARS))
        ticket = service.admit(key)
        try:
            prepared = await cancel_on_disconnect(request, service.prepare(upload.source(), read_options, upload.dir))
        except BaseException:
            ticket.release()
            raise
    prepared.timings_s["upload"] = upload_s
    return prepared, task, options, ticket


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def error_event(err: BaseException, request_id: str | None) -> str:
    if isinstance(err, CtscribeError):
        return sse("error", problem_body(status_for(err), err.code.value, err.message, request_id))
    return sse("error", problem_body(500, "internal_error", "internal error", request_id))
