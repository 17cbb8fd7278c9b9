"""Celery tasks: thin wrappers over :mod:`facecloak.contract.runner`, registered per app.

``facecloak worker`` builds settings, runtime, handlers and the Celery app once, then
calls :func:`register_tasks`; nothing is registered at import time. One generic run-item
task serves every job kind (the handler is chosen by the record's kind), plus the verify
and webhook tasks. Webhooks go through the durable outbox in the job record
(:mod:`facecloak.contract.webhooks`): the write that ends a job makes its entry due, the
webhook task is one claimed attempt at it, and the gateway's outbox sender
(``service.outbox``) makes every later attempt, after the backoff, also after restarts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from facecloak.contract.context import Context
from facecloak.contract.kinds import Handlers, Verifier
from facecloak.contract.queues import RUN_ITEM_TASK, VERIFY_TASK, WEBHOOK_TASK
from facecloak.contract.records import JobRecord
from facecloak.contract.runner import run_item, run_verify
from facecloak.contract.webhooks import send_job_webhook
from facecloak.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """What the tasks of a worker run with; the storage and job store open once per process."""

    settings: Settings
    handlers: Handlers
    verifier: Verifier | None = None
    warm_up: Callable[[], None] | None = None
    _context: Context | None = field(default=None, init=False, repr=False)
    _pid: int = field(default=0, init=False, repr=False)

    def context(self) -> Context:
        """Storage and job store of this process (opened again in each forked pool process)."""
        if self._context is None or self._pid != os.getpid():
            self._context = Context.from_settings(self.settings)
            self._pid = os.getpid()
        return self._context

    def warm(self) -> None:
        """Run the warm-up; a failure is logged (models then load on first use)."""
        if self.warm_up is None:
            return
        try:
            self.warm_up()
        except Exception:
            log.warning("model warm-up failed; models load on first use", exc_info=True)


def register_tasks(app: Celery, worker: Worker) -> None:
    """Register the run-item, verify and webhook tasks on ``app``, and the warm-up."""

    def finished(job: JobRecord) -> None:
        """A job ended: try its due outbox entry now rather than at the sender's next round."""
        if job.callback_url:
            app.send_task(WEBHOOK_TASK, args=[job.id])

    @app.task(name=RUN_ITEM_TASK)
    def run_item_task(job_id: str, index: int) -> None:
        """Run item ``index`` of a job; the last item to finish settles the job."""
        run_item(worker.context(), worker.handlers, job_id, index, finished)

    @app.task(name=VERIFY_TASK)
    def verify_task(original_key: str, protected_key: str, models: list[str] | None) -> Any:
        """The verification report of two stored photos."""
        if worker.verifier is None:
            raise RuntimeError("this worker has no verifier")
        return run_verify(worker.context(), worker.verifier, original_key, protected_key, models)

    @app.task(name=WEBHOOK_TASK)
    def webhook_task(job_id: str) -> bool:
        """One claimed attempt at the job's due outbox entry (signed POST of the job's JSON).

        False when nothing was due (taken or delivered elsewhere), refused, or failed; a
        failed attempt stays in the outbox and the gateway's sender retries it.
        """
        return send_job_webhook(worker.context(), job_id)

    def on_process_init(**_: Any) -> None:
        worker.warm()

    worker_process_init.connect(on_process_init, weak=False)
