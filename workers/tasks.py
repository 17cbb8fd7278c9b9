"""Celery tasks: thin wrappers over :mod:`facecloak.contract.runner` (one photo per task)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery.signals import worker_process_init

from facecloak.contract.records import JobRecord
from facecloak.contract.runner import Context, run_item, run_verify
from facecloak.settings import get_settings
from workers.celery_app import PROTECT_TASK, VERIFY_TASK, WEBHOOK_TASK, app

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def context() -> Context:
    """Storage and job store, opened once per worker process."""
    return Context.from_settings(get_settings())


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load the models once per worker process so that the first job does not pay for it."""
    if not get_settings().warm_up:
        return
    try:
        from facecloak.contract.options import ProtectOptions
        from workers.jobs import runtime

        runtime.detector()
        for name in ProtectOptions().surrogates:
            runtime.recognizer(name)
    except Exception:
        log.warning("model warm-up failed; models load on first use", exc_info=True)


def _finished(job: JobRecord) -> None:
    if job.callback_url:
        app.send_task(WEBHOOK_TASK, args=[job.id])


@app.task(name=PROTECT_TASK)
def protect_item(job_id: str, index: int) -> None:
    """Protect photo ``index`` of a job; the last photo to finish settles the job."""
    run_item(context(), job_id, index, _finished)


@app.task(name=VERIFY_TASK)
def verify(original_key: str, protected_key: str, models: list[str] | None) -> Any:
    """The verification table of two stored photos."""
    return run_verify(context(), original_key, protected_key, models)


@app.task(name=WEBHOOK_TASK)
def deliver_webhook(job_id: str) -> bool:
    """POST the finished job to its callback URL, with retries and backoff."""
    from service.notify import send_job_webhook

    return send_job_webhook(context(), job_id)
