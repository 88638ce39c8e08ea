"""Step 4, prepare: the uploaded CT decoded in a worker process and prepared for the model.

`InferenceService.prepare` does the work (the decode worker pool, then `pipe.prepare` on a
thread); this step ties it to the request: cancelled if the client leaves, and the upload's
receiving time joins the per-stage timings.
"""

from __future__ import annotations

from fastapi import Request

from app.admission import Ticket
from app.flow.disconnect import cancel_on_disconnect
from app.service import InferenceService, PreparedInput
from app.uploads import Upload
from imaging.options import ReadOptions


async def prepare(request: Request, upload: Upload, read_options: ReadOptions, ticket: Ticket) -> PreparedInput:
    """The prepared CT of an admitted request. On any failure the ticket is released; otherwise
    the caller still owns it."""
    service: InferenceService = request.app.state.service
    try:
        prepared = await cancel_on_disconnect(request, service.prepare(upload.source(), read_options, upload.dir))
    except BaseException:
        ticket.release()
        raise
    prepared.timings_s["upload"] = upload.receive_s
    return prepared
