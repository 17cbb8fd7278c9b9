"""Where jobs run: in this process (embedded) or on Celery workers (distributed).

The gateway only calls a :class:`Dispatcher`. The embedded one runs
:mod:`facecloak.contract.runner` with the handlers and verifier it was given (the CLI
builds the real ones); the Celery one sends tasks by name to the kind's queue and never
imports the worker code.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from facecloak.contract.context import Context
from facecloak.contract.kinds import Handlers, Verifier, get_kind
from facecloak.contract.queues import (
    QUEUES,
    RUN_ITEM_TASK,
    VERIFY_TASK,
    broker_url,
    celery_config,
)
from facecloak.contract.records import JobRecord
from facecloak.contract.runner import run_item, run_verify
from service.outbox import WebhookSender

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Runs items of jobs, verifications and webhooks somewhere."""

    mode: str

    def start(self) -> None:
        """Begin accepting work."""

    def stop(self) -> None:
        """Stop (embedded: wait for running photos)."""

    def enqueue(self, job_id: str, index: int, kind: str) -> None:
        """Schedule one item of a job of ``kind``."""

    def finished(self, job: JobRecord) -> None:
        """A job ended outside a worker (e.g. its last photo was failed by the reaper)."""

    def verify(
        self, original_key: str, protected_key: str, models: list[str] | None
    ) -> dict[str, Any]:
        """Run a verification and wait for its report as JSON (TimeoutError past the limit)."""

    def check(self) -> None:
        """Raise if work cannot be scheduled now."""

    def queue_depth(self) -> dict[str, int]:
        """Messages waiting per queue."""


class EmbeddedDispatcher:
    """A thread pool in the gateway process; verifications on a pool of their own (never
    behind running photos); webhooks from the outbox (:class:`service.outbox.WebhookSender`).

    ``handlers`` run the items (kind -> handler); ``verifier`` answers ``/v1/verify``. An
    item of a kind without a handler fails with ``unsupported_kind``.
    """

    mode = "embedded"

    def __init__(self, ctx: Context, handlers: Handlers, verifier: Verifier | None) -> None:
        self.ctx = ctx
        self.handlers = handlers
        self.verifier = verifier
        self._pool: ThreadPoolExecutor | None = None
        self.webhooks = WebhookSender(ctx)
        self._verifies: ThreadPoolExecutor | None = None
        self._pending = 0
        self._running: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Create the pools and re-queue photos accepted before a restart."""
        workers = max(1, self.ctx.settings.embedded_workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="facecloak-job")
        self.webhooks.start()
        size = max(1, self.ctx.settings.verify_concurrency)
        self._verifies = ThreadPoolExecutor(size, thread_name_prefix="facecloak-verifier")
        for job in self.ctx.store.active():
            for item in job.items:
                if item.status == "queued":
                    self.enqueue(job.id, item.index, job.kind)

    def stop(self) -> None:
        """Wait up to the grace period for running photos, then give up on them.

        Queued photos stay queued in the store and are dispatched again at the next start;
        a photo still running is retried then too (its lease runs out).
        """
        self.webhooks.stop()
        for pool in (self._pool, self._verifies):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        wait(list(self._running), timeout=self.ctx.settings.shutdown_grace_seconds)
        self._pool = self._verifies = None

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

    def enqueue(self, job_id: str, index: int, kind: str) -> None:
        """Run the item on the pool; errors are logged (the lease sweep recovers)."""
        future = self._submit(run_item, self.ctx, self.handlers, job_id, index, self.finished)
        future.add_done_callback(_log_failure)

    def finished(self, job: JobRecord) -> None:
        """Its webhook is in the outbox (written with the job's end): send it now."""
        if job.callback_url:
            self.webhooks.kick()

    def verify(
        self, original_key: str, protected_key: str, models: list[str] | None
    ) -> dict[str, Any]:
        """Run on the verification pool and wait (TimeoutError past the limit)."""
        if self.verifier is None:
            raise RuntimeError("this gateway has no verifier")
        if self._verifies is None:
            raise RuntimeError("the embedded executor is not running")
        args = (self.ctx, self.verifier, original_key, protected_key, models)
        future = self._verifies.submit(run_verify, *args)
        report: dict[str, Any] = future.result(timeout=self.ctx.settings.verify_timeout_seconds)
        return report

    def check(self) -> None:
        """The pool must be up."""
        if self._pool is None:
            raise RuntimeError("the embedded executor is not running")

    def queue_depth(self) -> dict[str, int]:
        """Photos waiting for a pool thread."""
        return {"embedded": self._pending}


class CeleryDispatcher:
    """Sends tasks by name to the Celery broker (the workers hold the task code, not us)."""

    mode = "distributed"

    def __init__(self, ctx: Context) -> None:
        from celery import Celery

        self.ctx = ctx
        self.webhooks = WebhookSender(ctx)
        url = broker_url(ctx.settings)
        self.app = Celery("facecloak-gateway", broker=url, backend=url)
        self.app.conf.update(celery_config(ctx.settings))

    def start(self) -> None:
        """Send due webhooks from the outbox (retries, and those pending at a restart)."""
        self.webhooks.start()

    def stop(self) -> None:
        """Stop sending webhooks."""
        self.webhooks.stop()

    def enqueue(self, job_id: str, index: int, kind: str) -> None:
        """Send the run-item task to the queue of the job's kind."""
        self.app.send_task(RUN_ITEM_TASK, args=[job_id, index], queue=get_kind(kind).queue)

    def finished(self, job: JobRecord) -> None:
        """Its webhook is in the outbox: this gateway sends it now (workers do the same for
        jobs they finish, with the webhook task; a claim makes each attempt happen once)."""
        if job.callback_url:
            self.webhooks.kick()

    def verify(
        self, original_key: str, protected_key: str, models: list[str] | None
    ) -> dict[str, Any]:
        """Send the verify task (gpu queue) and wait for its result."""
        from celery.exceptions import TimeoutError as CeleryTimeout

        result = self.app.send_task(VERIFY_TASK, args=[original_key, protected_key, models])
        try:
            report: dict[str, Any] = result.get(timeout=self.ctx.settings.verify_timeout_seconds)
            return report
        except CeleryTimeout as exc:  # not a builtin TimeoutError: the route maps that to 504
            result.revoke()
            raise TimeoutError("verification did not finish in time") from exc
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
        client = self._redis()
        try:
            return {q: int(client.llen(q)) for q in QUEUES}
        finally:
            client.close()


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception() if not future.cancelled() else None
    if exc is not None:
        log.error("background work failed", exc_info=exc)


def make_dispatcher(
    ctx: Context, handlers: Handlers | None = None, verifier: Verifier | None = None
) -> Dispatcher:
    """Celery when a broker is configured, else the embedded pool running ``handlers``."""
    if ctx.settings.broker_url:
        return CeleryDispatcher(ctx)
    return EmbeddedDispatcher(ctx, handlers or {}, verifier)
