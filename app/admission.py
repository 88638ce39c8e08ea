"""Admission control: a global cap on requests in flight and a cap per API key.

A request takes a `Ticket` once its upload is complete (a slow upload must not hold a slot:
receiving is bounded by its own deadline and minimum rate, app.uploads) and holds it until its
result is ready AND its model compute has stopped, so decoded volumes, queued and running
model work are all bounded by the same numbers, also when a client leaves or times out. Over
a key's cap -> 429 (that caller should slow down); over the global cap -> 503 (the service is
full); both carry Retry-After. `check` says so before a body is read, without taking a slot.
Background jobs wait for a slot instead of being refused.

A second `Admission` counts the request bodies being received (`what="uploads in progress"`):
receiving is bounded per upload in time and size, and these caps bound how many run at once,
so slow clients cannot pile up connections, temp dirs and disk without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from app.errors import Overloaded


class Ticket:
    """One admitted request. `release()` is idempotent; also a context manager.

    While model work runs for it (`hold()` ... `unhold()`), `release()` only marks it done: the
    slot is freed when the compute stops, even if the caller gave up earlier."""

    def __init__(self, admission: Admission, key: str, timeout_s: float):
        self._admission = admission
        self.key = key
        self.admitted_at = time.monotonic()
        self.deadline = self.admitted_at + timeout_s
        self._released = False
        self._done = False
        self._holds = 0

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def hold(self) -> None:
        self._holds += 1

    def unhold(self) -> None:
        self._holds -= 1
        self._free_if_idle()

    def release(self) -> None:
        self._done = True
        self._free_if_idle()

    def _free_if_idle(self) -> None:
        if self._done and self._holds <= 0 and not self._released:
            self._released = True
            self._admission._release(self.key)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Admission:
    def __init__(self, global_limit: int, per_key_limit: int, timeout_s: float, retry_after_s: int,
                 what: str = "requests in flight"):
        self.global_limit = global_limit
        self.per_key_limit = per_key_limit
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.what = what
        """What is counted, as the refusals name it."""
        self._per_key: Counter[str] = Counter()
        self._total = 0
        self._changed: asyncio.Condition | None = None

    @property
    def in_flight(self) -> int:
        return self._total

    def _has_room(self, key: str) -> bool:
        return self._total < self.global_limit and self._per_key[key] < self.per_key_limit

    def try_acquire(self, key: str) -> Ticket:
        """Admit now or raise `Overloaded` (429 for this key, 503 for the service)."""
        self.check(key)
        return self._take(key)

    def check(self, key: str) -> None:
        """Raise `Overloaded` if `try_acquire` would now; takes nothing."""
        if self._per_key[key] >= self.per_key_limit:
            raise Overloaded(
                f"this API key already has {self.per_key_limit} {self.what}", "key", self.retry_after_s
            )
        if self._total >= self.global_limit:
            raise Overloaded(
                f"the service has {self.global_limit} {self.what}", "global", self.retry_after_s
            )

    async def acquire_wait(self, key: str) -> Ticket:
        """Wait for a slot (background jobs)."""
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self._has_room(key))
            return self._take(key)

    def _take(self, key: str) -> Ticket:
        self._total += 1
        self._per_key[key] += 1
        return Ticket(self, key, self.timeout_s)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _release(self, key: str) -> None:
        self._total -= 1
        self._per_key[key] -= 1
        if self._per_key[key] <= 0:
            del self._per_key[key]
        if self._changed is not None:
            try:
                asyncio.get_running_loop().create_task(self._notify())
            except RuntimeError:  # no loop (shutdown): nobody is waiting
                pass

    async def _notify(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify_all()
