"""Send a finished job to its ``callback_url`` (signed; see :mod:`facecloak.contract.webhooks`)."""

from __future__ import annotations

from facecloak.contract.runner import Context
from facecloak.contract.webhooks import deliver
from service.schemas import job_view


def send_job_webhook(ctx: Context, job_id: str) -> bool:
    """POST the job JSON with retries; False when there is nothing to send or it failed."""
    job = ctx.store.get(job_id)
    if job is None or not job.callback_url:
        return False
    body = job_view(job).model_dump_json().encode()
    s = ctx.settings
    return deliver(
        job.callback_url,
        body,
        s.webhook_secret,
        s.webhook_max_attempts,
        s.webhook_backoff_seconds,
        s.webhook_timeout_seconds,
    )
