"""What the route modules share: auth, option fields, the upload -> model flow, SSE framing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import Request

from app.admission import Ticket
from app.auth import ANONYMOUS, api_key  # noqa: F401  (the routes' auth dependency)
from app.choices import MAX_CHOICE_CHARS, MAX_CHOICES, MIN_CHOICES, check_choices
from app.errors import problem_body, status_for
from app.service import InferenceService, PreparedInput, ReportTask, VqaTask
from app.settings import Settings
from app.uploads import MIB, Upload, UploadLimits, receive_upload
from ctscribe.errors import CtscribeError, ErrorCode
from imaging.options import ReadOptions

MAX_QUESTION_CHARS = 2000
MAX_UID_CHARS = 128
# Multipart is parsed by app.uploads (streamed, size-capped), so the body is declared here for /docs.
# These declarations are also what each endpoint accepts: any other field is a 400 (Options.only).
INPUT_PROPERTIES = {
    "series_instance_uid": {"type": "string", "maxLength": MAX_UID_CHARS,
                            "description": "DICOM SeriesInstanceUID (or its uid_hash) to use"},
    "resample_geometry": {"type": "boolean", "default": False,
                          "description": "Resample non-uniform slice spacing, gantry tilt and oblique "
                                         "orientation onto a regular grid (with a warning) instead of "
                                         "refusing them, as training reads its volumes"},
    "options": {"type": "string", "description": "The other fields as one JSON object (a form field wins)"},
}
GENERATION_PROPERTIES = {
    "max_new_tokens": {"type": "integer", "minimum": 1, "description": "Capped by the server setting"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2,
                    "description": "0 = greedy; otherwise at least 1e-4"},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "stream": {"type": "boolean", "description": "Server-Sent Events: `delta` events then `result`"},
}
OPTION_PROPERTIES = {**INPUT_PROPERTIES, **GENERATION_PROPERTIES}
"""What /report, /vqa and /jobs take besides their own fields."""
REPORT_FIELDS = {
    "consistency": {"type": "string", "enum": ["off", "warn", "repair"], "default": "warn",
                    "description": "Check the report against the label head: warn about confident "
                                   "disagreements, or also drop the contradicting sentences (repair)"},
}
VQA_FIELDS = {
    "question": {"type": "string", "minLength": 1, "maxLength": MAX_QUESTION_CHARS},
    "choices": {"type": "array", "items": {"type": "string", "maxLength": MAX_CHOICE_CHARS},
                "minItems": MIN_CHOICES, "maxItems": MAX_CHOICES,
                "description": "Multiple choice (repeat the field, or a JSON list): the answer is always one of "
                               "these; distinct, as SAMF's a-d"},
    "mode": {"type": "string", "enum": ["auto", "free", "choice"]},
    "mcq_mode": {"type": "string", "enum": ["likelihood", "generate"],
                 "description": "Multiple choice by option likelihood (always an option, with probabilities) or by "
                                "generating the answer and parsing it (the SAMF release's way; `generated` keeps "
                                "the text); default: the model's (samf-compat generates)"},
}
LIST_FIELDS = ("choices",)
"""Fields that may be repeated in a form; every other field is given once."""


def multipart_body(extra: dict[str, Any] | None = None, required: tuple[str, ...] = (),
                   base: dict[str, Any] = OPTION_PROPERTIES) -> dict:
    properties = {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "One NIfTI, one zip, or several DICOM files (always this field name)"},
        **base,
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


async def receive_counted_upload(request: Request, key: str) -> Upload:
    """The request body (app.uploads), counted while it arrives against the caps on uploads in
    progress: `max_concurrent_uploads` (503) and `max_concurrent_uploads_per_key` (429), both
    `queue_full` with Retry-After, before a byte of the body is read. The count is returned
    however receiving ends: complete, refused, timed out, or the client gone."""
    service: InferenceService = request.app.state.service
    settings: Settings = request.app.state.settings
    with service.uploads.try_acquire(key):
        return await receive_upload(request, upload_limits(settings), settings.upload_dir)


def _bad(message: str) -> CtscribeError:
    return CtscribeError(ErrorCode.INVALID_REQUEST, message)


class Options:
    """Option fields from the multipart form, or from one JSON `options` field (form wins).

    Strict, so a typo is an error rather than a silent default: `only()` refuses fields the
    endpoint does not take, a form field is given once (`choices` may repeat), integers are
    integers (not 1.5, not true), flags are booleans."""

    def __init__(self, upload: Upload):
        self.values: dict[str, Any] = {}
        self.warnings: list[str] = []
        self._json_names: set[str] = set()
        raw = upload.field("options")
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:  # JSONDecodeError, or an integer past Python's digit limit
                raise _bad("options: not valid JSON") from None
            if not isinstance(parsed, dict):
                raise _bad("options: expected a JSON object")
            self.values.update(parsed)
            self._json_names = set(parsed)
        self._form_names = set(upload.fields)
        self._repeated = sorted(n for n, v in upload.fields.items() if len(v) > 1 and n not in LIST_FIELDS)
        for name, values in upload.fields.items():
            if name != "options":
                self.values[name] = values if name in LIST_FIELDS else values[-1]

    def only(self, accepted: Iterable[str]) -> Options:
        """Refuse any field outside `accepted` (the endpoint's documented ones)."""
        accepted = set(accepted)
        unknown = (self._form_names - accepted) | (self._json_names - (accepted - {"options"}))
        if "file" in unknown:
            raise _bad("file: send the CT as a file part (with a filename), not as a text field")
        if unknown:
            names = ", ".join(_name(n) for n in sorted(unknown)[:5])
            raise _bad(f"unknown field(s) {names}; this endpoint takes {', '.join(sorted(accepted))} "
                       "and the CT file(s) as 'file'")
        if self._repeated:
            raise _bad(f"{self._repeated[0]}: given more than once")
        return self

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
        number = _integer(name, value) if kind is int else _real(name, value)
        if not lo <= number <= hi:
            raise _bad(f"{name}: must be between {lo:g} and {hi:g}")
        return number

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if value is None or isinstance(value, bool):
            return bool(value)
        text = value.strip().lower() if isinstance(value, str) else None
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("", "0", "false", "no", "off"):
            return False
        raise _bad(f"{name}: expected true or false")

    def choices(self) -> tuple[str, ...] | None:
        value = self.values.get("choices")
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if len(items) == 1 and isinstance(items[0], str) and items[0].lstrip().startswith("["):
            try:
                items = json.loads(items[0])
            except ValueError:
                raise _bad("choices: not a valid JSON list") from None
        if not isinstance(items, list):
            raise _bad("choices: expected a list of strings")
        return check_choices(items)

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


def _name(name: str) -> str:
    """A client-sent field name, quoted and cut short, for an error message."""
    return repr(name[:40] + ("..." if len(name) > 40 else ""))


def _integer(name: str, value: Any) -> int:
    # JSON true/false are ints to Python and 1.5 would truncate: neither is an integer here.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value):
        return int(value)
    raise _bad(f"{name}: expected an integer, got {_shown(value)}")


def _real(name: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e300 else float("inf")  # a 400-digit JSON int: out of range
    elif isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            raise _bad(f"{name}: expected a number, got {_shown(value)}") from None
    else:
        raise _bad(f"{name}: expected a number, got {_shown(value)}")
    if number != number:  # NaN
        raise _bad(f"{name}: not a number")
    return number


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:20] + ("..." if len(value) > 20 else ""))
    return f"a JSON {type(value).__name__.replace('dict', 'object').replace('list', 'array')}"


def input_read_options(service: InferenceService, options: Options) -> ReadOptions:
    """The reader options a request asks for: its series, and `resample_geometry` (default: refuse)."""
    read = service.read_options(options.str("series_instance_uid", MAX_UID_CHARS))
    if options.flag("resample_geometry"):
        read = dataclasses.replace(read, on_non_uniform="resample", on_gantry_tilt="resample", on_oblique="resample")
    return read


def report_task(options: Options, settings: Settings, extra_fields: Iterable[str] = ()) -> ReportTask:
    from model.consistency import MODES

    options.only([*OPTION_PROPERTIES, *REPORT_FIELDS, *extra_fields])
    consistency = options.str("consistency", 16) or "warn"
    if consistency not in MODES:
        raise _bad(f"consistency: one of {', '.join(MODES)}")
    return ReportTask(params=options.generation(settings), consistency=consistency)


def vqa_task(options: Options, settings: Settings, extra_fields: Iterable[str] = ()) -> VqaTask:
    options.only([*OPTION_PROPERTIES, *VQA_FIELDS, *extra_fields])
    question = options.str("question", MAX_QUESTION_CHARS)
    if not question or not question.strip():
        raise _bad("question: required")
    choices = options.choices()
    mode = options.str("mode", 16) or "auto"
    if mode not in ("auto", "free", "choice"):
        raise _bad("mode: one of auto, free, choice")
    if mode == "choice" and not choices:
        raise _bad(f"mode choice needs {MIN_CHOICES} to {MAX_CHOICES} choices")
    if mode == "free":
        choices = None
    mcq_mode = options.str("mcq_mode", 16)
    if mcq_mode is not None and mcq_mode not in ("likelihood", "generate"):
        raise _bad("mcq_mode: one of likelihood, generate")
    return VqaTask(question=question.strip(), choices=choices, params=options.generation(settings), mcq_mode=mcq_mode)


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
    with await receive_counted_upload(request, key) as upload:
        upload_s = time.perf_counter() - start
        options = Options(upload)
        task = make_task(options, settings)
        read_options = input_read_options(service, options)
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
