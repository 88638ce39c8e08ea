"""Uploads are decoded in worker processes, so a hostile file can kill a worker, not the server.

Each worker is a `spawn`ed process with an address-space limit (RLIMIT_AS) on top of its
idle footprint; the parent enforces a wall-clock limit per upload. A worker that runs out of
time is killed and replaced (`corrupt_file`: the file could not be decoded in time); one that
dies (segfault in a C reader, the kernel's OOM killer) is replaced likewise; a MemoryError
inside the limit is `payload_too_large`. Workers are recycled after `max_tasks_per_worker`
uploads so fragmentation cannot grow the server's footprint without bound, and an idle worker
holds nothing of its last upload (the volume is released as soon as the reply is sent).

The worker returns the canonical volume's arrays and summary; the service runs
`pipe.prepare` in a thread (the worker never imports torch, so its memory limit stays tight).
The voxels travel as raw bytes in chunks, never pickled: pickling copies the array twice in
the worker (3x the volume at peak), so the documented `max_voxels` (a 2 GiB volume) broke the
default memory limit; sent from a view it costs the worker nothing and the server one array.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ctscribe.errors import CtscribeError, ErrorCode, ImagingError

log = logging.getLogger("ctscribe.app")

MIB = 1024 * 1024
_VOXEL_CHUNK_BYTES = 64 * MIB
"""Voxels are sent in messages of at most this size, so the server's receive buffer stays small."""
_READER_MODULES = ("imaging.read", "imaging.nifti", "imaging.dicom", "imaging.archive", "imaging.sitk_reader")
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


@dataclass
class DecodedVolume:
    """What a worker hands back for a model request."""

    hu: object
    """(Z, Y, X) float32 numpy array in HU on canonical axes."""
    spacing_mm_zyx: tuple[float, float, float]
    orientation_in: str
    summary: dict
    """`Volume.summary()`: the response's input summary (uid hashes only)."""
    decode_s: float
    source_hint: str = ""
    """`Volume.source_hint`: "ctscribe-phantom" for a recognised phantom, else ""."""


# ---------------------------------------------------------------------------- worker side


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _limit_memory(memory_mb: int) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: run without the limit
        return
    limit = _vm_size_bytes() + memory_mb * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _scrub(message: str, paths: list[str]) -> str:
    # Messages from readers may name the temp path; the caller should see neither it nor our layout.
    for path in paths:
        message = message.replace(path, "<upload>")
    return message[:500]


def _decode(task: dict):
    if task["kind"] == "ping":  # start-up check: the worker has imported the readers
        return "pong"
    from imaging.read import read_volume

    start = time.perf_counter()
    volume = read_volume(task["source"], task["options"])
    summary = volume.summary()
    if task["kind"] == "inspect":
        return summary
    return DecodedVolume(
        hu=volume.hu,
        spacing_mm_zyx=tuple(float(s) for s in volume.spacing_mm_zyx),
        orientation_in=volume.orientation_in,
        summary=summary,
        decode_s=time.perf_counter() - start,
        source_hint=volume.source_hint,
    )


def _worker_main(conn: Connection, memory_mb: int) -> None:
    for name in _THREAD_ENV:
        os.environ.setdefault(name, "1")
    # The readers are imported up front (pydicom alone takes a second or more), before the
    # memory limit is set, so the limit counts what decoding adds on top of them.
    import importlib

    for module in _READER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # a reader missing from a partial install: decoding will say so
            pass

    _limit_memory(memory_mb)
    _serve(conn, memory_mb)


def _serve(conn: Connection, memory_mb: int) -> None:
    """Answer tasks until told to stop. Between tasks the worker holds nothing of the last one:
    a volume kept until the next upload would pin gigabytes in an idle worker."""
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        _answer(conn, task, memory_mb)
        del task  # no gc.collect(): ~10 ms a task in a worker that has imported the readers


def _answer(conn: Connection, task: dict, memory_mb: int) -> None:
    """Decode one task and send the reply; everything it decoded dies with this frame."""
    source = task["source"]
    paths = [str(p) for p in source] if isinstance(source, list) else [str(source)]
    paths.append(str(task.get("dir", "")) or "\0")
    # Scratch files (a zip's members) go into the upload's private dir, which the server
    # deletes even when this worker is killed half-way.
    tempfile.tempdir = task.get("dir") or None
    try:
        reply = ("ok", _decode(task))
    except CtscribeError as err:
        reply = ("error", err.code.value, _scrub(err.message, paths))
    except MemoryError:
        reply = ("error", ErrorCode.PAYLOAD_TOO_LARGE.value,
                 f"decoding this upload needs more than {memory_mb} MiB")
    except Exception as exc:  # a reader bug on a hostile file: still the file's fault
        reply = ("error", ErrorCode.CORRUPT_FILE.value, f"cannot decode the file ({type(exc).__name__})")
    if reply[0] == "ok" and isinstance(reply[1], DecodedVolume):
        _send_volume(conn, reply[1])
        return
    try:
        conn.send(reply)
    except MemoryError:
        del reply
        conn.send(("error", ErrorCode.PAYLOAD_TOO_LARGE.value, "the decoded volume is too large to return"))


def _send_volume(conn: Connection, decoded: DecodedVolume) -> None:
    """The reply without its voxels, then the voxels as raw bytes from views of the array (no copy)."""
    hu = np.ascontiguousarray(decoded.hu)  # the readers' arrays are C-contiguous already: no copy
    conn.send(("volume", dataclasses.replace(decoded, hu=None), hu.shape, hu.dtype.str))
    flat = memoryview(hu.reshape(-1).view(np.uint8))
    for start in range(0, len(flat), _VOXEL_CHUNK_BYTES):
        conn.send_bytes(flat[start : start + _VOXEL_CHUNK_BYTES])


# ---------------------------------------------------------------------------- parent side


def _receive_volume(conn: Connection, decoded: DecodedVolume, shape: tuple, dtype: str) -> DecodedVolume:
    """The server's side of `_send_volume`: chunk by chunk into a new writable array (at peak the
    server holds the array and one chunk)."""
    hu = np.empty(shape, dtype=np.dtype(dtype))
    flat = memoryview(hu.reshape(-1).view(np.uint8))
    received = 0
    while received < len(flat):
        try:
            received += conn.recv_bytes_into(flat, received)
        except multiprocessing.BufferTooShort:
            raise OSError("the decoder sent more voxels than its shape holds") from None
    return dataclasses.replace(decoded, hu=hu)


class _Worker:
    def __init__(self, ctx, memory_mb: int):
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.conn = parent_conn
        self.process = ctx.Process(target=_worker_main, args=(child_conn, memory_mb), daemon=True,
                                   name="ctscribe-decode")
        self.process.start()
        child_conn.close()
        self.tasks_done = 0

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.join(timeout=5)
        finally:
            self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.process.join(timeout=2)
        except (OSError, ValueError):
            pass
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


class DecodePool:
    """`n_workers` decode processes; `await pool.decode(...)` runs one upload in one of them."""

    def __init__(self, n_workers: int, memory_mb: int, time_s: float, max_tasks_per_worker: int = 200):
        self.n_workers = n_workers
        self.memory_mb = memory_mb
        self.time_s = time_s
        self.max_tasks_per_worker = max_tasks_per_worker
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker | None] | None = None
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self.restarts = 0
        """Workers replaced after a kill, a crash or a timeout (exported as a metric)."""
        self._closed = False

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx, self.memory_mb)
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill() if kill else worker.stop()

    async def start(self) -> None:
        """Spawn the workers (each imports the readers once; a second or two)."""
        self._idle = asyncio.Queue()
        for _ in range(self.n_workers):
            self._idle.put_nowait(await asyncio.to_thread(self._spawn))

    async def warm_up(self) -> None:
        """Round-trip every worker once, so the first upload does not wait for its imports."""
        await asyncio.gather(*(self.decode(None, None, "ping") for _ in range(self.n_workers)))

    async def decode(self, source: Path | list[Path], options, kind: str = "volume", upload_dir: Path | None = None):
        """Decode `source` in a worker: a `DecodedVolume` (kind "volume") or the inspect dict."""
        if self._idle is None or self._closed:
            raise CtscribeError(ErrorCode.MODEL_NOT_READY, "the decoder is not running")
        worker = await self._idle.get()
        task = {"kind": kind, "source": source, "options": options, "dir": str(upload_dir or "")}
        loop = asyncio.get_running_loop()
        idle = self._idle
        # The round trip owns the worker until it ends, even if this request is cancelled meanwhile.
        future = loop.run_in_executor(None, self._roundtrip_and_release, worker, task, loop, idle)
        reply = await future
        if reply[0] == "ok":
            return reply[1]
        _, code, message = reply
        raise ImagingError(code, message)

    def _roundtrip_and_release(self, worker: _Worker | None, task: dict, loop, idle) -> tuple:
        replacement: _Worker | None = worker
        try:
            if worker is None or not worker.process.is_alive():
                if worker is not None:
                    self._retire(worker, kill=True)
                worker = replacement = self._spawn()
            try:
                worker.conn.send(task)
                if not worker.conn.poll(self.time_s):
                    replacement = None
                    self._retire(worker, kill=True)
                    self.restarts += 1
                    return ("error", ErrorCode.CORRUPT_FILE.value,
                            f"decoding took longer than {self.time_s:g} s; the file was abandoned")
                reply = worker.conn.recv()
                if reply[0] == "volume":
                    reply = ("ok", _receive_volume(worker.conn, *reply[1:]))
            except (EOFError, OSError, BrokenPipeError):
                replacement = None
                self._retire(worker, kill=True)
                self.restarts += 1
                return ("error", ErrorCode.CORRUPT_FILE.value, "the decoder crashed on this file")
            worker.tasks_done += 1
            if worker.tasks_done >= self.max_tasks_per_worker:
                replacement = None
                self._retire(worker, kill=False)
            return reply
        finally:
            if replacement is None and not self._closed:
                try:
                    replacement = self._spawn()
                except Exception:  # cannot spawn now: the next decode retries
                    log.exception("could not start a decode worker")
            try:
                loop.call_soon_threadsafe(idle.put_nowait, replacement)
            except RuntimeError:  # the event loop is gone (shutdown)
                if replacement is not None:
                    self._retire(replacement, kill=True)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()
