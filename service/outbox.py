"""The gateway's webhook sender: delivers due outbox entries, fairly across tenants.

Each round asks the job store for every tenant's earliest due webhook and runs one attempt
(:func:`facecloak.contract.webhooks.send_job_webhook`) per tenant at a time on a pool of
``webhook_concurrency`` threads. A tenant whose receiver hangs therefore holds one thread
for at most one attempt deadline, never the others' deliveries; a failed attempt is due
again after its backoff and picked up by a later round, without a thread sleeping.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from facecloak.contract.context import Context
from facecloak.contract.webhooks import send_job_webhook

log = logging.getLogger(__name__)


class WebhookSender:
    """Started and stopped by the dispatcher; :meth:`kick` when a job with a callback ends."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.size = max(1, ctx.settings.webhook_concurrency)
        self._busy: set[str] = set()  # tenants with an attempt in flight
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Deliver in the background (also what was pending before a restart)."""
        self._stopped.clear()
        self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="facecloak-webhook")
        self._thread = threading.Thread(target=self._loop, daemon=True, name="facecloak-outbox")
        self._thread.start()

    def stop(self) -> None:
        """Stop taking entries; attempts in flight end with their deadline."""
        self._stopped.set()
        self._wake.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def kick(self) -> None:
        """Look for due entries now rather than at the next period."""
        self._wake.set()

    def _loop(self) -> None:
        period = max(0.05, self.ctx.settings.reaper_interval_seconds)
        while not self._stopped.is_set():
            try:
                self.round()
            except Exception:  # the store is down: try again next period
                log.warning("webhook outbox round failed", exc_info=True)
            self._wake.wait(period)
            self._wake.clear()

    def round(self) -> int:
        """Start one attempt for each tenant with a due entry and a free slot; how many."""
        started = 0
        pool = self._pool
        for job in self.ctx.store.webhooks_due(self.ctx.store.now()):
            with self._lock:
                if pool is None or job.tenant in self._busy or len(self._busy) >= self.size:
                    continue
                self._busy.add(job.tenant)
            try:
                pool.submit(self._attempt, job.id, job.tenant)
            except RuntimeError:  # the pool was shut down
                self._done(job.tenant)
                break
            started += 1
        return started

    def _attempt(self, job_id: str, tenant: str) -> None:
        ok = False
        try:
            send_job_webhook(self.ctx, job_id)
            ok = True
        except Exception:  # e.g. the store is down: wait for the next period
            log.error("webhook for %s failed", job_id, exc_info=True)
        finally:
            self._done(tenant, wake=ok)

    def _done(self, tenant: str, wake: bool = False) -> None:
        with self._lock:
            self._busy.discard(tenant)
        if wake:
            self._wake.set()  # a slot is free: the tenant's next entry may be due
