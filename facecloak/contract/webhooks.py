"""Signed job-finished callbacks (:func:`send_job_webhook`).

The body is the job JSON (as ``GET /v1/jobs/{id}`` returns it). The request carries::

    X-FaceCloak-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
    X-FaceCloak-Event: job.finished

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in
constant time (:func:`verify_signature`) and rejects old timestamps (replays). A delivery is
retried with exponential backoff until the receiver answers 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import httpx

from facecloak.contract.context import Context
from facecloak.contract.views import job_view

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-FaceCloak-Signature"
EVENT_HEADER = "X-FaceCloak-Event"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance_s: float = 300.0, at: float | None = None
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is not older than the tolerance."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((at if at is not None else time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def deliver_once(url: str, body: bytes, secret: str, timeout_s: float) -> bool:
    """POST once; True on a 2xx answer."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        EVENT_HEADER: "job.finished",
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.warning("webhook %s failed: %s", url, exc)
        return False
    if response.is_success:
        return True
    log.warning("webhook %s answered %s", url, response.status_code)
    return False


def deliver(
    url: str, body: bytes, secret: str, attempts: int, backoff_s: float, timeout_s: float
) -> bool:
    """POST with retries, waiting ``backoff_s``, then twice as long each time."""
    delay = backoff_s
    for attempt in range(attempts):
        if deliver_once(url, body, secret, timeout_s):
            return True
        if attempt + 1 < attempts:
            time.sleep(delay)
            delay *= 2
    log.error("webhook %s gave up after %d attempts", url, attempts)
    return False


def send_job_webhook(ctx: Context, job_id: str) -> bool:
    """POST the finished job's public JSON to its ``callback_url``, signed, with retries.

    False when the job is gone, has no callback URL, or every attempt failed.
    """
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
