"""`InferenceService`: the serving layer between the HTTP routes and `model.Pipeline`.

No HTTP in here. It owns the pipeline (loaded once, warmed up), the decode worker pool,
admission (global and per-key caps), request deadlines, and the micro-batcher: model work
from concurrent requests that arrives within `batch_wait_ms` (up to `max_batch`, same task
and generation parameters) runs as ONE `pipe.report` / `pipe.answer` / `pipe.choose` call
on a single model thread (torch releases the GIL, so the event loop keeps serving). A GPU
out-of-memory error fails only the requests it hit (retryable 503) and the server goes on.
A request whose client left or whose deadline passed is cancelled: its row of the batch stops
generating at the next token (the others go on), it is counted, and its admission slot is
freed only once the compute it started has stopped, so admission bounds the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.admission import Admission, Ticket
from app.decode_worker import DecodedVolume, DecodePool
from app.errors import Overloaded
from app.metrics import Metrics
from app.settings import DISCLAIMER, Settings
from ctscribe.errors import CtscribeError, ErrorCode
from imaging.options import ReadOptions

log = logging.getLogger("ctscribe.app")

WARMUP_SHAPE_ZYX = (40, 64, 64)


@dataclass(frozen=True)
class ReportTask:
    params: Any
    """model.GenerationParams"""
    consistency: str = "warn"
    """The consistency guard: off | warn | repair (model.consistency)."""


@dataclass(frozen=True)
class VqaTask:
    question: str
    choices: tuple[str, ...] | None
    """Multiple choice when given; free text otherwise."""
    params: Any
    mcq_mode: str | None = None
    """Multiple choice: likelihood | generate; None = the model's (`prompt.mcq_mode`)."""

    @property
    def mode(self) -> str:
        return "choice" if self.choices else "free"


@dataclass
class PreparedInput:
    ct: Any
    """model.PreparedCT"""
    summary: dict
    timings_s: dict[str, float]
    source_hint: str = ""
    """`Volume.source_hint` of the input (model.provenance decides what it means for this model)."""


@dataclass
class _Work:
    kind: str  # report | answer | choose
    task: ReportTask | VqaTask
    ct: Any
    future: asyncio.Future
    on_text: Callable[[str], None] | None
    ticket: Ticket | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set when the result is no longer wanted; the model thread checks it every token."""
    enqueued_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0

    @property
    def batch_key(self) -> tuple:
        mcq_mode = getattr(self.task, "mcq_mode", None)
        params = getattr(self.task, "params", None) if self.kind != "choose" or mcq_mode == "generate" else None
        return (self.kind, params, getattr(self.task, "consistency", None), mcq_mode)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _is_cuda_oom(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError)


class InferenceService:
    def __init__(self, settings: Settings, pipeline: Any = None, metrics: Metrics | None = None):
        """`pipeline`: a ready `model.Pipeline`, a zero-argument callable returning one, or None
        to load `settings.checkpoint`."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._pipeline_source = pipeline
        self.pipe: Any = None
        self.state = "starting"
        """starting | loading | warming_up | ready | failed"""
        self.error: str | None = None
        self.admission = Admission(
            settings.queue_size, settings.per_key_concurrency, settings.request_timeout_s, settings.retry_after_s
        )
        self.metrics.in_flight.set_function(lambda: self.admission.in_flight)
        self.uploads = Admission(
            settings.max_concurrent_uploads, settings.max_concurrent_uploads_per_key, settings.upload_timeout_s,
            settings.retry_after_s, what="uploads in progress",
        )
        """Request bodies being received (app/flow/upload.py)."""
        self.metrics.uploads_in_progress.set_function(lambda: self.uploads.in_flight)
        self.decoder = DecodePool(settings.decode_workers, settings.decode_memory_mb, settings.decode_time_s)
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctscribe-model")
        self._prep_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ctscribe-prepare")
        self._pending: list[_Work] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    async def start(self) -> None:
        """Start the decoder and batcher; load and warm up the model in the background."""
        await self.decoder.start()
        self._tasks.append(asyncio.create_task(self._batch_loop(), name="ctscribe-batcher"))
        self._tasks.append(asyncio.create_task(self._load(), name="ctscribe-load"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for work in self._pending:
            if not work.future.done():
                work.future.set_exception(CtscribeError(ErrorCode.MODEL_NOT_READY, "the service is shutting down"))
        self._pending.clear()
        await asyncio.to_thread(self.decoder.close)
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        self._prep_threads.shutdown(wait=False, cancel_futures=True)

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.state = "loading"
            decoder_ready = asyncio.ensure_future(self.decoder.warm_up())
            self.pipe = await loop.run_in_executor(self._model_thread, self._load_pipeline)
            await decoder_ready
            if self.settings.warmup:
                self.state = "warming_up"
                await loop.run_in_executor(self._model_thread, self._warm_up)
            self.state = "ready"
            self.metrics.ready.set(1)
            log.info("model ready model_hash=%s weights_hash=%s device=%s",
                     self.pipe.model_hash, self.pipe.weights_hash, self.pipe.device)
        except Exception as exc:  # the model cannot serve: stay alive, /health/ready says why
            self.state = "failed"
            self.error = f"{type(exc).__name__}: {exc}"[:500]
            log.error("model failed to load: %s", self.error)

    def _load_pipeline(self) -> Any:
        source = self._pipeline_source
        if source is not None:
            return source() if callable(source) and not hasattr(source, "report") else source
        import model
        from model.runtime import configure_threads, decode_dtype

        device = resolve_device(self.settings.device)
        if device.split(":")[0] == "cpu":
            log.info("torch uses %d CPU threads", configure_threads())
        if self.settings.checkpoint == "tiny":
            pipe = model.build("tiny", device=device, seed=0)
        else:
            pipe = model.load(self.settings.checkpoint, device=device)
        if self.settings.fast_decode:
            pipe.for_inference(decode_dtype(self.settings.decode_dtype, pipe.device))
        return pipe

    def _warm_up(self) -> None:
        """One short generation on a synthetic cylinder, so lazy init happens before traffic."""
        import numpy as np

        import model

        z, y, x = WARMUP_SHAPE_ZYX
        hu = np.full(WARMUP_SHAPE_ZYX, -1000.0, dtype=np.float32)
        yy, xx = np.mgrid[:y, :x]
        body = (yy - y / 2) ** 2 + (xx - x / 2) ** 2 < (0.4 * x) ** 2
        hu[:, body] = 40.0
        ct = self.pipe.prepare(hu, (5.0, 5.0, 5.0), "LPS")
        self.pipe.report([ct], model.GenerationParams(max_new_tokens=2))

    def require_ready(self) -> Any:
        """The pipeline; `model_not_ready` (503, Retry-After) while it loads or if loading failed."""
        if self.state != "ready":
            detail = f"the model is {self.state}" + (f" ({self.error})" if self.error else "")
            err = CtscribeError(ErrorCode.MODEL_NOT_READY, detail)
            err.retry_after_s = self.settings.retry_after_s  # type: ignore[attr-defined]
            raise err
        return self.pipe

    # ------------------------------------------------------------------ admission

    def admit(self, key: str) -> Ticket:
        return self.admission.try_acquire(key)

    async def admit_wait(self, key: str) -> Ticket:
        return await self.admission.acquire_wait(key)

    # ------------------------------------------------------------------ inputs

    async def inspect(self, source: Path | list[Path], options: ReadOptions, upload_dir: Path) -> dict:
        """The `ctscribe inspect` summary, decoded in a worker; no model involved."""
        return await self._decode(source, options, "inspect", upload_dir)

    async def prepare(self, source: Path | list[Path], options: ReadOptions, upload_dir: Path) -> PreparedInput:
        """Decode in a worker process, then `pipe.prepare` in a thread."""
        pipe = self.require_ready()
        start = time.perf_counter()
        decoded: DecodedVolume = await self._decode(source, options, "volume", upload_dir)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        ct = await loop.run_in_executor(
            self._prep_threads, pipe.prepare, decoded.hu, decoded.spacing_mm_zyx, decoded.orientation_in
        )
        return PreparedInput(ct, decoded.summary, {"decode": decode_s, "prepare": time.perf_counter() - start},
                             decoded.source_hint)

    async def _decode(self, source, options, kind: str, upload_dir: Path):
        restarts = self.decoder.restarts
        try:
            return await self.decoder.decode(source, options, kind, upload_dir)
        finally:
            if self.decoder.restarts > restarts:
                self.metrics.decode_restarts.inc(self.decoder.restarts - restarts)

    # ------------------------------------------------------------------ model work

    async def run(
        self, prepared: PreparedInput, task: ReportTask | VqaTask, ticket: Ticket,
        on_text: Callable[[str], None] | None = None,
    ) -> dict:
        """Queue the model work, wait for its batch, and build the response payload."""
        pipe = self.require_ready()
        kind = "report" if isinstance(task, ReportTask) else ("choose" if task.choices else "answer")
        work = _Work(kind, task, prepared.ct, asyncio.get_running_loop().create_future(), on_text, ticket)
        self._pending.append(work)
        self.metrics.queue_depth.set(len(self._pending))
        self._wakeup.set()
        try:
            output, batch_info = await asyncio.wait_for(work.future, ticket.remaining_s())
        except asyncio.TimeoutError:
            self._cancel(work, "timeout")
            raise CtscribeError(
                ErrorCode.TIMEOUT, f"no result within {self.settings.request_timeout_s:g} s"
            ) from None
        except asyncio.CancelledError:  # the client went away (or the server is stopping)
            self._cancel(work, "client_gone")
            raise
        timings = dict(prepared.timings_s)
        timings["queue"] = work.started_at - work.enqueued_at
        timings.update({k: float(v) for k, v in (output.timings_s or {}).items()})
        timings["total"] = time.monotonic() - ticket.admitted_at
        self.metrics.observe_stages(timings)
        return self._payload(pipe, prepared, task, output, timings, batch_info)

    def _cancel(self, work: _Work, reason: str) -> None:
        work.cancel.set()
        self.metrics.cancelled.labels(reason=reason).inc()

    def _payload(self, pipe, prepared, task, output, timings, batch_info) -> dict:
        from model.provenance import attach, input_warnings

        attach([output], input_warnings(getattr(pipe, "trained_on", ""), prepared.source_hint))
        summary = prepared.summary
        payload: dict[str, Any] = {
            "model_hash": pipe.model_hash,
            "weights_hash": pipe.weights_hash,
            "generation": task.params.to_dict() if task.params is not None else {},
            "input": summary,
            "warnings": list(summary.get("warnings", [])),
            "timings_s": timings,
            "batch_size": batch_info,
            "disclaimer": DISCLAIMER,
        }
        if isinstance(task, ReportTask):
            payload["report"] = output.to_dict()
        else:
            payload["question"] = task.question
            payload["mode"] = task.mode
            answer = output.to_dict()
            if task.choices:
                answer["choices"] = list(task.choices)
            payload["answer"] = answer
        payload["report" if isinstance(task, ReportTask) else "answer"].pop("timings_s", None)
        return payload

    async def _batch_loop(self) -> None:
        wait_s = self.settings.batch_wait_ms / 1000.0
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            key = self._pending[0].batch_key
            if wait_s > 0 and sum(w.batch_key == key for w in self._pending) < self.settings.max_batch:
                await asyncio.sleep(wait_s)  # let concurrent requests join this batch
            batch, rest = [], []
            for work in self._pending:
                if work.future.done():  # cancelled or timed out while queued
                    continue
                if work.batch_key == key and len(batch) < self.settings.max_batch:
                    batch.append(work)
                else:
                    rest.append(work)
            self._pending = rest
            self.metrics.queue_depth.set(len(rest))
            if batch:
                try:
                    await self._run_batch(batch)
                except Exception as exc:  # the batcher must outlive any one batch
                    log.error("batch failed: %s", type(exc).__name__, exc_info=exc)
                    for work in batch:
                        if not work.future.done():
                            work.future.set_exception(RuntimeError("model call failed"))

    async def _run_batch(self, batch: list[_Work]) -> None:
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        for work in batch:
            work.started_at = now
            if work.ticket is not None:
                work.ticket.hold()  # its slot stays taken until this compute stops
        try:
            await self._compute(batch, loop)
        finally:
            for work in batch:
                if work.ticket is not None:
                    work.ticket.unhold()

    async def _compute(self, batch: list[_Work], loop: asyncio.AbstractEventLoop) -> None:
        try:
            outputs = await loop.run_in_executor(self._model_thread, self._call_model, batch, loop)
        except Exception as exc:
            if _is_cuda_oom(exc) and len(batch) > 1:
                # The batch did not fit: each request alone may.
                for work in batch:
                    if not work.future.done():  # not cancelled meanwhile
                        await self._run_batch([work])
                return
            err = self._model_error(exc)
            for work in batch:
                if not work.future.done():
                    work.future.set_exception(err)
            return
        self.metrics.batch_size.observe(len(batch))
        n_tokens = sum(int(getattr(o, "n_tokens", 0) or 0) for o in outputs)
        generate_s = max(float((outputs[0].timings_s or {}).get("generate", 0.0)), 0.0) if outputs else 0.0
        if n_tokens:
            self.metrics.tokens.inc(n_tokens)
            if generate_s > 0:
                self.metrics.tokens_per_s.set(n_tokens / generate_s)
        for work, output in zip(batch, outputs, strict=True):
            if not work.future.done():
                work.future.set_result((output, len(batch)))

    def _model_error(self, exc: Exception) -> Exception:
        if isinstance(exc, CtscribeError):
            return exc
        if _is_cuda_oom(exc):
            import torch

            torch.cuda.empty_cache()
            log.warning("CUDA out of memory on a single request; failed it and kept serving")
            return Overloaded("the GPU ran out of memory for this request; retry later", "global",
                              self.settings.retry_after_s)
        log.error("model call failed: %s", type(exc).__name__, exc_info=exc)
        return RuntimeError("model call failed")

    def _call_model(self, batch: list[_Work], loop: asyncio.AbstractEventLoop) -> list:
        """Runs on the model thread."""
        cts = [w.ct for w in batch]
        on_text = None
        if any(w.on_text for w in batch):
            def on_text(index: int, delta: str) -> None:
                callback = batch[index].on_text
                if callback is not None and not batch[index].future.done():
                    loop.call_soon_threadsafe(callback, delta)

        kind = batch[0].kind
        task = batch[0].task
        cancelled = [w.cancel.is_set for w in batch]
        if kind == "report":
            return self.pipe.report(cts, task.params, on_text=on_text, consistency=task.consistency,
                                    cancelled=cancelled)
        questions = [w.task.question for w in batch]
        if kind == "answer":
            return self.pipe.answer(cts, questions, task.params, on_text=on_text, cancelled=cancelled)
        return self.pipe.choose(cts, questions, [list(w.task.choices) for w in batch], mode=task.mcq_mode,
                                params=task.params, cancelled=cancelled)
