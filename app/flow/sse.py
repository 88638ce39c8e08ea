"""Step 6 with `stream=true`: the answer as Server-Sent Events.

`event: delta` with `{"text": ...}` as tokens are decoded, then one `event: result` with the
whole JSON response, or `event: error` with a problem document. Input errors are still plain
4xx problem responses: the stream only starts once the CT has been read and prepared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.errors import problem_body, status_for
from app.flow.generate import StreamedGeneration
from ctscribe.errors import CtscribeError

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""No caching, and no buffering by a proxy (nginx) in front: each event goes out as it comes."""


def event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def error_event(err: BaseException, request_id: str | None) -> str:
    if isinstance(err, CtscribeError):
        return event("error", problem_body(status_for(err), err.code.value, err.message, request_id))
    return event("error", problem_body(500, "internal_error", "internal error", request_id))


def stream_response(generation: StreamedGeneration, finish: Callable[[dict], BaseModel],
                    request_id: str) -> StreamingResponse:
    """The events of `generation`; `finish` turns its payload into the response model."""

    async def events():
        try:
            while (text := await generation.next_text()) is not None:
                yield event("delta", {"text": text})
            try:
                result = finish(await generation.result)
            except Exception as err:
                yield error_event(err, request_id)
            else:
                yield event("result", result.model_dump(mode="json"))
        finally:
            generation.cancel()  # the client went away: drop the queued work

    return StreamingResponse(events(), media_type="text/event-stream", headers=HEADERS)
