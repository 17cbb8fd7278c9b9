"""Where jobs run: in this process (embedded) or on Celery workers (distributed).

The gateway only calls a :class:`Dispatcher`; neither implementation imports torch here
(the embedded one runs :mod:`facecloak.contract.runner`, which loads the protect job lazily).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from facecloak.contract.records import JobRecord
from facecloak.contract.runner import Context, run_item, run_verify
from service.notify import send_job_webhook

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Runs photos of jobs, verifications and webhooks somewhere."""

    mode: str

    def start(self) -> None:
        """Begin accepting work."""

    def stop(self) -> None:
        """Stop (embedded: wait for running photos)."""

    def enqueue(self, job_id: str, index: int) -> None:
        """Schedule one photo of a job."""

    def finished(self, job: JobRecord) -> None:
        """A job ended outside a worker (e.g. its last photo was failed by the reaper)."""

    def verify(self, original_key: str, protected_key: str, models: list[str] | None) -> Any:
        """Run a verification and wait for its table (TimeoutError past the limit)."""

    def check(self) -> None:
        """Raise if work cannot be scheduled now."""

    def queue_depth(self) -> dict[str, int]:
        """Messages waiting per queue."""


class EmbeddedDispatcher:
    """A thread pool in the gateway process; webhooks on a second small pool."""

    mode = "embedded"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pool: ThreadPoolExecutor | None = None
        self._hooks: ThreadPoolExecutor | None = None
        self._pending = 0
        self._running: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Create the pools and re-queue photos accepted before a restart."""
        workers = max(1, self.ctx.settings.embedded_workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="facecloak-job")
        self._hooks = ThreadPoolExecutor(2, thread_name_prefix="facecloak-webhook")
        for job in self.ctx.store.active():
            for item in job.items:
                if item.status == "queued":
                    self.enqueue(job.id, item.index)

    def stop(self) -> None:
        """Wait up to the grace period for running photos, then give up on them.

        Queued photos stay queued in the store and are dispatched again at the next start;
        a photo still running is retried then too (its lease runs out).
        """
        for pool in (self._pool, self._hooks):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        wait(list(self._running), timeout=self.ctx.settings.shutdown_grace_seconds)
        self._pool = self._hooks = None

    def _submit(self, fn: Any, *args: Any) -> Future[Any]:
        if self._pool is None:
            raise RuntimeError("the embedded executor is not running")
        with self._lock:
            self._pending += 1

        def run() -> Any:
            with self._lock:
                self._pending -= 1
            return fn(*args)

        future = self._pool.submit(run)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)

    def enqueue(self, job_id: str, index: int) -> None:
        """Run the photo on the pool; errors are logged (the lease sweep recovers)."""
        future = self._submit(run_item, self.ctx, job_id, index, self.finished)
        future.add_done_callback(_log_failure)

    def finished(self, job: JobRecord) -> None:
        """Send the webhook in the background."""
        if job.callback_url and self._hooks is not None:
            self._hooks.submit(send_job_webhook, self.ctx, job.id).add_done_callback(_log_failure)

    def verify(self, original_key: str, protected_key: str, models: list[str] | None) -> Any:
        """Run on the job pool and wait."""
        future = self._submit(run_verify, self.ctx, original_key, protected_key, models)
        return future.result(timeout=self.ctx.settings.verify_timeout_seconds)

    def check(self) -> None:
        """The pool must be up."""
        if self._pool is None:
            raise RuntimeError("the embedded executor is not running")

    def queue_depth(self) -> dict[str, int]:
        """Photos waiting for a pool thread."""
        return {"embedded": self._pending}


class CeleryDispatcher:
    """Sends tasks by name to the Celery broker (workers import the task code, not us)."""

    mode = "distributed"

    def __init__(self, ctx: Context) -> None:
        from workers.celery_app import make_celery

        self.ctx = ctx
        self.app = make_celery(ctx.settings)

    def start(self) -> None:
        """Nothing to start: workers run elsewhere."""

    def stop(self) -> None:
        """Nothing to stop."""

    def enqueue(self, job_id: str, index: int) -> None:
        """Send ``protect_item`` to the gpu queue."""
        from workers.celery_app import PROTECT_TASK

        self.app.send_task(PROTECT_TASK, args=[job_id, index])

    def finished(self, job: JobRecord) -> None:
        """Send the webhook task to the cpu queue."""
        from workers.celery_app import WEBHOOK_TASK

        if job.callback_url:
            self.app.send_task(WEBHOOK_TASK, args=[job.id])

    def verify(self, original_key: str, protected_key: str, models: list[str] | None) -> Any:
        """Send ``verify`` to the gpu queue and wait for its result."""
        from workers.celery_app import VERIFY_TASK

        result = self.app.send_task(VERIFY_TASK, args=[original_key, protected_key, models])
        try:
            return result.get(timeout=self.ctx.settings.verify_timeout_seconds)
        finally:
            result.forget()

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(
            self.app.conf.broker_url, socket_connect_timeout=2, socket_timeout=5
        )

    def check(self) -> None:
        """PING the broker."""
        client = self._redis()
        try:
            client.ping()
        finally:
            client.close()

    def queue_depth(self) -> dict[str, int]:
        """LLEN of each queue list."""
        from workers.celery_app import CPU_QUEUE, GPU_QUEUE

        client = self._redis()
        try:
            return {q: int(client.llen(q)) for q in (GPU_QUEUE, CPU_QUEUE)}
        finally:
            client.close()


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception() if not future.cancelled() else None
    if exc is not None:
        log.error("background work failed", exc_info=exc)


def make_dispatcher(ctx: Context) -> Dispatcher:
    """Celery when a broker is configured, else the embedded pool."""
    if ctx.settings.broker_url:
        return CeleryDispatcher(ctx)
    return EmbeddedDispatcher(ctx)
