"""Background jobs: `POST /jobs` answers 202 at once; `GET /jobs/{id}` polls.

A bounded in-memory store: at most `max_jobs` at once (more -> 503 queue_full); finished
results are dropped `ttl_s` after they finish. A job is visible only to the API key that
created it. Jobs wait for an admission slot instead of being refused for load.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.errors import INTERNAL_ERROR, Overloaded, problem_body, status_for
from imaging.errors import CtscribeError

log = logging.getLogger("ctscribe.app")


@dataclass
class Job:
    id: str
    task: str
    owner: str
    request_id: str
    status: str = "queued"
    """queued | running | succeeded | failed"""
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: dict | None = None
    error: dict | None = None
    runner: asyncio.Task | None = None

    def to_dict(self, ttl_s: float) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "task": self.task,
            "status": self.status,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "expires_at": self.finished_at + ttl_s if self.finished_at else None,
            "result": self.result,
            "error": self.error,
        }


class JobStore:
    def __init__(self, max_jobs: int, ttl_s: float, retry_after_s: int = 2):
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self._jobs: dict[str, Job] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def purge(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for job_id in [j.id for j in self._jobs.values() if j.finished_at and now - j.finished_at > self.ttl_s]:
            del self._jobs[job_id]

    def check_room(self) -> None:
        """Raise `Overloaded` (503) when the store is full, before an upload is read."""
        self.purge()
        if len(self._jobs) >= self.max_jobs:
            raise Overloaded(f"{self.max_jobs} jobs are already queued or kept", "global", self.retry_after_s)

    def submit(self, task: str, owner: str, request_id: str,
               work: Callable[[Job], Awaitable[dict]]) -> Job:
        """Start `work(job)` in the background; its dict result or error lands in the job."""
        self.check_room()
        job = Job(id=secrets.token_urlsafe(16), task=task, owner=owner, request_id=request_id)
        self._jobs[job.id] = job
        job.runner = asyncio.create_task(self._run(job, work), name=f"ctscribe-job-{job.id[:6]}")
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[dict]]) -> None:
        try:
            job.result = await work(job)
            job.status = "succeeded"
        except CtscribeError as err:
            job.error = problem_body(status_for(err), err.code.value, err.message, job.request_id)
            job.status = "failed"
        except asyncio.CancelledError:
            job.error = problem_body(503, "model_not_ready", "the service shut down", job.request_id)
            job.status = "failed"
            raise
        except Exception as exc:  # a bug, not an input error: logged, reported as internal
            log.error("job failed request_id=%s type=%s", job.request_id, type(exc).__name__, exc_info=exc)
            job.error = problem_body(500, INTERNAL_ERROR, "internal error", job.request_id)
            job.status = "failed"
        finally:
            job.finished_at = time.time()
            job.runner = None

    def get(self, job_id: str, owner: str) -> Job | None:
        self.purge()
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    async def close(self) -> None:
        runners = [j.runner for j in self._jobs.values() if j.runner is not None]
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
