"""Multipart uploads streamed to a private temp dir, with every size cap enforced while reading.

One NIfTI, one zip, or several DICOM files, plus form fields. Files are written under
generated names (`00000.upload`, ...) — the client's filename is never used for a path or
logged; the readers recognise the format by content. The caller owns the `Upload` and must
call `cleanup()` (or use it as a context manager): the directory is always deleted.

Receiving is bounded in time as well as size: a wall-clock deadline for the whole body, and
after a grace period a minimum average rate, so a client trickling bytes is cut off with a 408
(`timeout`) instead of holding a connection, a temp dir and (formerly) an admission slot.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import UploadTimeout
from ctscribe.errors import CtscribeError, ErrorCode

MIB = 1024 * 1024
MAX_FIELDS = 256
"""Non-file form fields in one request."""
MAX_HEADER_BYTES = 8192
"""Header bytes of one multipart part."""
FILE_FIELDS = ("file",)
"""The form field names a CT file may be sent under (repeat it for several DICOM files)."""


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int
    """Whole request body."""
    max_part_bytes: int
    """One file part."""
    max_files: int
    max_field_bytes: int
    """One non-file form field."""
    timeout_s: float = math.inf
    """Wall-clock limit for receiving the whole body."""
    min_bytes_per_s: float = 0.0
    """Slowest accepted average rate once `grace_s` has passed (0: no rate check)."""
    grace_s: float = 0.0

    def wait_s(self, received: int, elapsed_s: float) -> float:
        """How long the next chunk may take before the upload is too slow (<= 0: it already is)."""
        limit_s = self.timeout_s
        if self.min_bytes_per_s > 0:
            # The rate stays acceptable while received >= min_bytes_per_s * elapsed.
            limit_s = min(limit_s, max(self.grace_s, received / self.min_bytes_per_s))
        return limit_s - elapsed_s

    def too_slow(self, received: int, elapsed_s: float) -> UploadTimeout:
        if elapsed_s >= self.timeout_s:
            return UploadTimeout(f"the upload did not complete within {self.timeout_s:g} s")
        return UploadTimeout(f"the upload is too slow: {received} bytes in {elapsed_s:.0f} s; at least "
                             f"{self.min_bytes_per_s:g} bytes/s are required after {self.grace_s:g} s")


@dataclass
class Upload:
    dir: Path
    """Private (0700) directory holding the files; deleted by cleanup()."""
    files: list[Path] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)
    n_bytes: int = 0
    """Bytes of file content received."""
    receive_s: float = 0.0
    """Seconds the body took to arrive (the `upload` stage of the timings; app/flow/upload.py)."""

    def source(self) -> Path | list[Path]:
        """What `imaging.read.read_volume` takes: one path (NIfTI / zip / DICOM file) or a file list."""
        if not self.files:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, "no file uploaded: send one NIfTI, one zip, or DICOM files")
        if len(self.files) == 1:
            return self.files[0]
        _check_one_series(self.files)
        return list(self.files)

    def field(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _too_large(what: str, limit_bytes: int) -> CtscribeError:
    return CtscribeError(ErrorCode.PAYLOAD_TOO_LARGE, f"{what} exceeds {limit_bytes / MIB:.1f} MiB")


class _Receiver:
    """python-multipart callbacks: route each part to a file or a field, enforcing limits."""

    def __init__(self, upload: Upload, limits: UploadLimits):
        self.upload = upload
        self.limits = limits
        self.headers: dict[bytes, bytes] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._fd: int | None = None
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._part_bytes = 0
        self.error: CtscribeError | None = None
        self.complete = False
        """The closing boundary arrived: a body cut short is refused, not read as far as it got."""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.headers = {}
        self._header_bytes = 0
        self._part_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, "multipart part headers are too large")

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, "each multipart part needs Content-Disposition: form-data; name=...")
        name = params[b"name"].decode("utf-8", "replace")
        if b"filename" in params:
            if name not in FILE_FIELDS:
                raise CtscribeError(ErrorCode.INVALID_REQUEST, f"a file was sent as form field {name[:64]!r}; "
                                    f"send the CT file(s) as {' or '.join(map(repr, FILE_FIELDS))}")
            if len(self.upload.files) >= self.limits.max_files:
                raise CtscribeError(ErrorCode.PAYLOAD_TOO_LARGE, f"more than {self.limits.max_files} files in one upload")
            # A generated name: the client's filename never reaches the file system or the logs.
            path = self.upload.dir / f"{len(self.upload.files):05d}.upload"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self.upload.files.append(path)
            self._field_name = None
        else:
            if sum(len(v) for v in self.upload.fields.values()) >= MAX_FIELDS:
                raise CtscribeError(ErrorCode.INVALID_REQUEST, f"more than {MAX_FIELDS} form fields")
            self._field_name = name
            self._field_value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        self._part_bytes += n
        if self._fd is not None:
            if self._part_bytes > self.limits.max_part_bytes:
                raise _too_large("an uploaded file", self.limits.max_part_bytes)
            self.upload.n_bytes += n
            os.write(self._fd, data[start:end])
        else:
            if self._part_bytes > self.limits.max_field_bytes:
                raise _too_large(f"form field {self._field_name!r}", self.limits.max_field_bytes)
            self._field_value += data[start:end]

    def on_part_end(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        elif self._field_name is not None:
            value = bytes(self._field_value).decode("utf-8", "replace")
            self.upload.fields.setdefault(self._field_name, []).append(value)
            self._field_name = None

    def on_end(self) -> None:
        self.complete = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST, "expected multipart/form-data with the CT file(s) and option fields"
        )
    return params[b"boundary"]


def _check_declared_length(request: Request, limits: UploadLimits) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        n = int(declared)
    except ValueError as exc:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, "invalid Content-Length") from exc
    if n > limits.max_upload_bytes:
        raise _too_large("the request body", limits.max_upload_bytes)


def make_private_dir(parent: Path | None) -> Path:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="ctscribe-", dir=parent))  # mode 0700


async def receive_upload(request: Request, limits: UploadLimits, parent: Path | None = None) -> Upload:
    """Stream the multipart body to disk; on any failure nothing is left behind."""
    boundary = _boundary(request)
    _check_declared_length(request, limits)
    upload = Upload(dir=make_private_dir(parent))
    receiver = _Receiver(upload, limits)
    parser = MultipartParser(boundary, receiver.callbacks())
    received = 0
    chunks = request.stream().__aiter__()
    start = time.monotonic()
    try:
        while True:
            elapsed_s = time.monotonic() - start
            wait_s = limits.wait_s(received, elapsed_s)
            if wait_s <= 0:
                raise limits.too_slow(received, elapsed_s)
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), None if math.isinf(wait_s) else wait_s)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise limits.too_slow(received, time.monotonic() - start) from None
            received += len(chunk)
            if received > limits.max_upload_bytes:
                raise _too_large("the request body", limits.max_upload_bytes)
            parser.write(chunk)
        parser.finalize()
        if not receiver.complete:
            raise CtscribeError(ErrorCode.INVALID_REQUEST,
                                "the multipart body ended before its closing boundary (a truncated upload?)")
    except MultipartParseError as exc:
        receiver.close()
        upload.cleanup()
        raise CtscribeError(ErrorCode.INVALID_REQUEST, "malformed multipart body") from exc
    except ClientDisconnect as exc:
        receiver.close()
        upload.cleanup()
        raise CtscribeError(ErrorCode.INVALID_REQUEST, "client disconnected during upload") from exc
    except BaseException:
        receiver.close()
        upload.cleanup()
        raise
    receiver.close()
    return upload


def _check_one_series(files: list[Path]) -> None:
    """Several files must be the DICOM files of a series: a zip or a NIfTI / NRRD / MetaImage among
    them is `ambiguous_series` (the reader would otherwise use one and skip the rest). Only file
    heads are read; a file that is no CT format at all is left to the reader (it warns)."""
    from imaging import detect

    others: dict[str, int] = {}
    for path in files:
        with open(path, "rb") as f:
            if f.read(132)[128:132] == b"DICM":
                continue
        try:
            fmt = detect.detect_format(path)
        except CtscribeError:
            continue
        if fmt != detect.DICOM:
            others[fmt] = others.get(fmt, 0) + 1
    if others:
        found = ", ".join(f"{n} {fmt}" for fmt, n in sorted(others.items()))
        raise CtscribeError(ErrorCode.AMBIGUOUS_SERIES, f"{len(files)} files were sent, among them {found}: send one "
                            "NIfTI, one zip, or only the DICOM files of one series")
