"""Cancel awaited work when the client goes away, so a request nobody waits for stops costing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from fastapi import Request

from ctscribe.errors import CtscribeError, ErrorCode


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
            raise CtscribeError(ErrorCode.INVALID_REQUEST, "client disconnected") from None
        raise
    finally:
        watcher.cancel()
