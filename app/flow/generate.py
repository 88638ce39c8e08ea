"""Step 5, generate: the model work of an admitted request, queued on the service's micro-batcher.

Both forms release the ticket when they end; its slot stays taken until the compute it started
has stopped (app/admission.py), also when the client left early.
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from app.admission import Ticket
from app.flow.disconnect import cancel_on_disconnect
from app.service import InferenceService, PreparedInput, ReportTask, VqaTask


async def generate(request: Request, prepared: PreparedInput, task: ReportTask | VqaTask, ticket: Ticket) -> dict:
    """The response payload (`InferenceService.run`), the work cancelled if the client goes away."""
    service: InferenceService = request.app.state.service
    try:
        return await cancel_on_disconnect(request, service.run(prepared, task, ticket))
    finally:
        ticket.release()


class StreamedGeneration:
    """The model work for `stream=true`, started at once; its text can be read as it is decoded.

    It owns the ticket: released when the work ends, even if the client never reads the stream."""

    def __init__(self, service: InferenceService, prepared: PreparedInput, task: ReportTask | VqaTask,
                 ticket: Ticket):
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        self.result: asyncio.Task[dict] = asyncio.create_task(self._run(service, prepared, task, ticket))
        """The response payload, or the error that ended the work."""

    async def _run(self, service: InferenceService, prepared: PreparedInput, task: ReportTask | VqaTask,
                   ticket: Ticket) -> dict:
        try:
            return await service.run(prepared, task, ticket, on_text=self._texts.put_nowait)
        finally:
            ticket.release()
            self._texts.put_nowait(None)

    async def next_text(self) -> str | None:
        """The next piece of decoded text; None once the work has ended."""
        return await self._texts.get()

    def cancel(self) -> None:
        """Drop the work if unfinished (the client went away)."""
        self.result.cancel()
