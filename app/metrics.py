"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ctscribe_requests_total", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.stage_seconds = Histogram(
            "ctscribe_stage_seconds",
            "Per-stage latency: upload, decode, prepare, queue, encode, generate, total",
            ["stage"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.rejections = Counter(
            "ctscribe_rejections_total", "Error responses by problem code", ["code"], registry=r
        )
        self.queue_depth = Gauge("ctscribe_queue_depth", "Model requests waiting for a batch", registry=r)
        self.in_flight = Gauge("ctscribe_in_flight", "Requests admitted and not finished", registry=r)
        self.uploads_in_progress = Gauge(
            "ctscribe_uploads_in_progress", "Request bodies being received (not yet admitted)", registry=r
        )
        self.batch_size = Histogram(
            "ctscribe_batch_size", "Requests per model call", buckets=(1, 2, 3, 4, 6, 8, 12, 16), registry=r
        )
        self.tokens = Counter("ctscribe_generated_tokens_total", "Tokens generated", registry=r)
        self.cancelled = Counter(
            "ctscribe_cancelled_total",
            "Model requests cancelled before their result: the client left (client_gone) or the "
            "deadline passed (timeout); their generation stops at the next token",
            ["reason"], registry=r,
        )
        self.tokens_per_s = Gauge(
            "ctscribe_tokens_per_second", "Generated tokens per second of the last model call", registry=r
        )
        self.decode_restarts = Counter(
            "ctscribe_decode_worker_restarts_total", "Decode workers killed (timeout, crash) and replaced",
            registry=r,
        )
        self.gpu_memory = Gauge(
            "ctscribe_gpu_memory_bytes", "CUDA memory allocated by the model process", ["kind"], registry=r
        )
        self.ready = Gauge("ctscribe_ready", "1 once the model is loaded and warmed up", registry=r)

    def observe_stages(self, timings_s: dict[str, float]) -> None:
        for stage, seconds in timings_s.items():
            self.stage_seconds.labels(stage=stage).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        self._sample_gpu()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _sample_gpu(self) -> None:
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.gpu_memory.labels(kind="allocated").set(torch.cuda.memory_allocated())
            self.gpu_memory.labels(kind="reserved").set(torch.cuda.memory_reserved())
            self.gpu_memory.labels(kind="max_allocated").set(torch.cuda.max_memory_allocated())
