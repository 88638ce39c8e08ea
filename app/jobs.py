"""Background jobs: `POST /jobs` answers 202 at once; `GET /jobs/{id}` polls; `DELETE` drops one.

Jobs live in an embedded SQLite database: in memory by default, or in the file
`CTSCRIBE_JOBS_DB`, where finished results survive a restart (a job still queued or running
when the server stopped is marked failed when it starts again: its upload is gone). One
server per file: an exclusive lock beside it refuses a second one. Finished results are
dropped `ttl_s` after they finish, in memory and on disk alike.

Capacity: one API key may keep `max_jobs_per_key` jobs (queued, running and finished ones
until they expire or are deleted); more is 429 `queue_full`. The whole store keeps `max_jobs`;
more is 503 `queue_full`. Either way `Retry-After` says when the first of those jobs expires.
A job is visible only to the API key that created it. Jobs wait for an admission slot
instead of being refused for load.

All access happens on the event loop thread; a check and the insert it guards run without an
`await` between them, so concurrent submissions cannot overshoot a quota.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import INTERNAL_ERROR, Overloaded, problem_body, status_for
from ctscribe.errors import CtscribeError, ErrorCode

log = logging.getLogger("ctscribe.app")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    task        TEXT NOT NULL,
    owner       TEXT NOT NULL,   -- the API key's id (app.auth.key_id), never the key
    request_id  TEXT NOT NULL,
    status      TEXT NOT NULL,   -- queued | running | succeeded | failed
    created_at  REAL NOT NULL,   -- Unix time, seconds
    finished_at REAL,
    result      TEXT,            -- JSON
    error       TEXT             -- JSON problem document
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner);
"""
UNFINISHED = ("queued", "running")


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"], task=row["task"], owner=row["owner"], request_id=row["request_id"],
            status=row["status"], created_at=row["created_at"], finished_at=row["finished_at"],
            result=json.loads(row["result"]) if row["result"] else None,
            error=json.loads(row["error"]) if row["error"] else None,
        )


class JobStore:
    def __init__(self, max_jobs: int, ttl_s: float, retry_after_s: int = 2, *,
                 max_jobs_per_key: int | None = None, path: Path | None = None):
        self.max_jobs = max_jobs
        self.max_jobs_per_key = max_jobs_per_key or max_jobs
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.path = path
        self._runners: dict[str, asyncio.Task] = {}
        self._lock_fd: int | None = None
        self._db = self._open(path)

    # -- storage ---------------------------------------------------------------------------

    def _open(self, path: Path | None) -> sqlite3.Connection:
        if path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = _exclusive_lock(path.with_name(path.name + ".lock"))
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # results are private
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.row_factory = sqlite3.Row
        db.executescript(SCHEMA)
        unfinished = db.execute(f"SELECT id, request_id FROM jobs WHERE status IN ({','.join('?' * len(UNFINISHED))})",
                                UNFINISHED).fetchall()
        now = time.time()
        for row in unfinished:  # their uploads are gone with the previous process
            error = problem_body(503, "model_not_ready", "the service restarted before this job finished; "
                                 "submit it again", row["request_id"])
            db.execute("UPDATE jobs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                       (now, json.dumps(error), row["id"]))
        if unfinished:
            log.warning("jobs: %d job(s) were unfinished when the service stopped; marked failed", len(unfinished))
        return db

    def _save(self, job: Job) -> None:
        self._db.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, result = ?, error = ? WHERE id = ?",
            (job.status, job.finished_at, json.dumps(job.result) if job.result is not None else None,
             json.dumps(job.error) if job.error is not None else None, job.id),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]

    def purge(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._db.execute("DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (now - self.ttl_s,))

    # -- capacity --------------------------------------------------------------------------

    def check_room(self, owner: str) -> None:
        """Raise `Overloaded` when `owner` is at its quota (429) or the store is full (503)."""
        self.purge()
        owned = self._db.execute("SELECT COUNT(*) FROM jobs WHERE owner = ?", (owner,)).fetchone()[0]
        if owned >= self.max_jobs_per_key:
            raise Overloaded(
                f"this API key already has {owned} jobs (the limit is {self.max_jobs_per_key}); fetch and "
                "DELETE finished ones, or wait until they expire", "key", self._retry_after(owner))
        if len(self) >= self.max_jobs:
            raise Overloaded(f"{self.max_jobs} jobs are already queued or kept", "global", self._retry_after())

    def _retry_after(self, owner: str | None = None) -> int:
        """Seconds until the first of the counted jobs expires (an unfinished one: a whole TTL at least)."""
        now = time.time()
        where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        first = self._db.execute(f"SELECT MIN(COALESCE(finished_at, ?)) FROM jobs {where}", (now, *args)).fetchone()[0]
        wait = (first if first is not None else now) + self.ttl_s - now
        return max(self.retry_after_s, math.ceil(wait))

    # -- lifecycle -------------------------------------------------------------------------

    def submit(self, task: str, owner: str, request_id: str, work: Callable[[Job], Awaitable[dict]],
               on_done: Callable[[], None] | None = None) -> Job:
        """Start `work(job)` in the background; its dict result or error lands in the job. `on_done`
        runs however the job ends, even if it is cancelled before it starts (e.g. to delete its upload)."""
        self.check_room(owner)
        job = Job(id=secrets.token_urlsafe(16), task=task, owner=owner, request_id=request_id)
        self._db.execute(
            "INSERT INTO jobs (id, task, owner, request_id, status, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (job.id, job.task, job.owner, job.request_id, job.status, job.created_at),
        )
        runner = asyncio.create_task(self._run(job, work), name=f"ctscribe-job-{job.id[:6]}")
        if on_done is not None:
            runner.add_done_callback(lambda _: on_done())
        self._runners[job.id] = runner
        return job

    def set_running(self, job: Job) -> None:
        job.status = "running"
        self._save(job)

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
            self._runners.pop(job.id, None)
            self._save(job)

    def get(self, job_id: str, owner: str) -> Job | None:
        self.purge()
        row = self._db.execute("SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
        return Job.from_row(row) if row is not None else None

    def delete(self, job_id: str, owner: str) -> bool:
        """Drop a job (cancelling it if it has not finished); False if `owner` has no such job."""
        if self._db.execute("DELETE FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).rowcount == 0:
            return False
        runner = self._runners.pop(job_id, None)
        if runner is not None:
            runner.cancel()
        return True

    async def close(self) -> None:
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None


def _exclusive_lock(lock_path: Path) -> int:
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST,
            f"the job store {lock_path.with_suffix('')} is in use by another ctscribe server; "
            "give each server its own CTSCRIBE_JOBS_DB",
        ) from None
    return fd
