"""Step 1, upload: the request body (app/uploads.py), counted while it arrives.

The caps on uploads in progress, `max_concurrent_uploads` (503) and
`max_concurrent_uploads_per_key` (429), both `queue_full` with Retry-After, refuse a body
before a byte of it is read. The count is returned however receiving ends: complete,
refused, timed out, or the client gone.
"""

from __future__ import annotations

import time

from fastapi import Request

from app.service import InferenceService
from app.settings import Settings
from app.uploads import MIB, Upload, UploadLimits, receive_upload


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


async def receive(request: Request, key: str) -> Upload:
    """The complete upload of API key `key`, its receiving time in `upload.receive_s`. The
    caller owns it (`cleanup()`, or use it as a context manager)."""
    service: InferenceService = request.app.state.service
    settings: Settings = request.app.state.settings
    start = time.perf_counter()
    with service.uploads.try_acquire(key):
        upload = await receive_upload(request, upload_limits(settings), settings.upload_dir)
    upload.receive_s = time.perf_counter() - start
    return upload
