"""Verifications on their own bounded pool, so slow ones cannot starve the other routes.

A verification waits for a report for up to ``verify_timeout_seconds``. Waiting on the
server's shared threadpool (which also serves every ``def`` route, such as ``GET /v1/jobs``)
let a burst of slow verifications block the whole gateway. Here each one takes one of
``verify_concurrency`` slots before its body is read (503 ``verify_busy`` when none is free)
and waits on a thread of its own pool; a slot is given back when that thread is done.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from service.errors import ApiError

BACKSTOP_S = 5.0
"""Extra seconds the route waits past the dispatcher's own timeout before answering 504."""


class VerifySlot:
    """One admitted verification: :meth:`run` its blocking wait once, on the pool."""

    def __init__(self, pool: VerifyPool) -> None:
        self.pool = pool
        self.future: Future[Any] | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the pool; TimeoutError past the timeout plus :data:`BACKSTOP_S`."""
        self.future = self.pool.executor.submit(fn, *args)
        self.future.add_done_callback(lambda _: self.pool.release())
        wrapped = asyncio.wrap_future(self.future)
        return await asyncio.wait_for(wrapped, self.pool.timeout_s + BACKSTOP_S)


class VerifyPool:
    """``size`` verifications at once, each waiting on a thread of this pool."""

    def __init__(self, size: int, timeout_s: float) -> None:
        self.size = max(1, size)
        self.timeout_s = timeout_s
        self.executor = ThreadPoolExecutor(self.size, thread_name_prefix="facecloak-verify")
        self.busy = 0
        self._lock = threading.Lock()

    def _acquire(self) -> None:
        with self._lock:
            if self.busy >= self.size:
                raise ApiError(
                    503,
                    "verify_busy",
                    f"{self.size} verifications are running; retry shortly",
                    {"limit": self.size},
                    headers={"Retry-After": "5"},
                )
            self.busy += 1

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.busy -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[VerifySlot]:
        """Admit one verification (503 ``verify_busy`` when every slot is taken)."""
        self._acquire()
        slot = VerifySlot(self)
        try:
            yield slot
        finally:
            if slot.future is None:  # refused before it ran: nothing else frees the slot
                self.release()
