"""Signed job-finished callbacks (:func:`send_job_webhook`), safe against SSRF, from an outbox.

The body is the job JSON (as ``GET /v1/jobs/{id}`` returns it), with the Standard Webhooks
headers (https://www.standardwebhooks.com)::

    webhook-id: msg_<job id>              (the same on every retry)
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")> [v1,<...> ...]
    X-FaceCloak-Event: job.finished

Each tenant's key comes from ``webhook_secrets`` (``tenant:secret,...``; a tenant listed
twice is signed with both keys, space-separated, for rotation) or else ``webhook_secret``.
``webhook_secret`` is one key: the tenants that fall back to it can forge each other's
webhooks (:func:`shared_secret_tenants`; the gateway refuses to start in distributed mode
when it serves more than one).
A secret ``whsec_<base64>`` is the base64-decoded key, any other text its UTF-8 bytes. A
job whose tenant has no secret gets no webhook: nothing is ever sent unsigned.

A receiver recomputes the HMAC, compares in constant time and rejects old timestamps
(:func:`verify_signature`). Callback hosts are resolved and every address checked
(:func:`resolve_callback`: no loopback, private, link-local, reserved or multicast
address unless the host is on ``webhook_allowed_hosts``); delivery connects to an address
that was checked (no DNS rebinding), never follows redirects, and each attempt has an
overall deadline of ``webhook_timeout_seconds``.

Delivery state lives in the job record (:class:`~facecloak.contract.records.WebhookState`),
set in the same atomic write that ends the job, and the job store indexes due entries
(:meth:`~facecloak.contract.store.JobStore.webhooks_due`): pending webhooks survive
restarts. Each call of :func:`send_job_webhook` is one claimed attempt; retries are due
entries again, picked up by the gateway's outbox sender (``service.outbox``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from facecloak.contract.context import Context
from facecloak.contract.records import JobRecord
from facecloak.contract.views import job_view
from facecloak.settings import Settings

log = logging.getLogger(__name__)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
EVENT_HEADER = "X-FaceCloak-Event"
_BLOCKED_NAMES = ("localhost", "metadata", "metadata.google.internal")
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")


class CallbackRefused(ValueError):
    """A callback URL that may not be called; ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Target:
    """A checked callback: the URL, its host and the addresses it may be reached at."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def host_list(spec: str) -> set[str]:
    """``"a.example, B.example"`` -> ``{"a.example", "b.example"}``."""
    return {h.strip().lower().strip("[]") for h in spec.split(",") if h.strip()}


def forbidden_address(address: str) -> bool:
    """True for loopback, private, link-local, reserved, multicast, unspecified or any other
    non-global address (IPv4, IPv6 and IPv4-mapped IPv6)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


def _parse(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host or len(url) > 2000:
        raise CallbackRefused("invalid_callback_url", "callback_url must be an http(s) URL")
    return parts.scheme, host.lower(), port or (443 if parts.scheme == "https" else 80)


def resolve_callback(url: str, allowed_hosts: str) -> Target:
    """Check ``url`` and resolve its host; :class:`CallbackRefused` when it may not be called.

    With an allow list, only listed hosts are accepted, and those may resolve anywhere (the
    operator's decision, e.g. a receiver on 127.0.0.1). Otherwise the host must not be a
    local name and every address it resolves to must be public.
    """
    _, host, port = _parse(url)
    allowed = host_list(allowed_hosts)
    if allowed and host not in allowed:
        raise CallbackRefused(
            "callback_host_not_allowed", f"callback_url host {host!r} is not in the allowed list"
        )
    trusted = host in allowed
    if not trusted and (host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES)):
        raise CallbackRefused("callback_host_forbidden", f"callback_url host {host!r} is local")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise CallbackRefused(
            "callback_host_unresolvable", f"callback_url host {host!r} does not resolve"
        ) from exc
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise CallbackRefused("callback_host_unresolvable", f"{host!r} has no address")
    if not trusted and any(forbidden_address(a) for a in addresses):
        raise CallbackRefused(
            "callback_host_forbidden",
            f"callback_url host {host!r} resolves to a private or reserved address",
        )
    return Target(url, host, port, addresses)


def _own_secrets(settings: Settings) -> dict[str, list[str]]:
    """``webhook_secrets`` as tenant -> its keys (in the order given)."""
    own: dict[str, list[str]] = {}
    for entry in settings.webhook_secrets.split(","):
        name, sep, secret = entry.strip().rpartition(":")
        if sep and name.strip() and secret.strip():
            own.setdefault(name.strip(), []).append(secret.strip())
    return own


def tenant_secrets(settings: Settings, tenant: str) -> list[str]:
    """The keys that sign ``tenant``'s webhooks (empty: its webhooks are not sent)."""
    own = _own_secrets(settings).get(tenant)
    if own:
        return own
    return [settings.webhook_secret] if settings.webhook_secret else []


def shared_secret_tenants(settings: Settings, tenants: Iterable[str]) -> list[str]:
    """The ``tenants`` without a key of their own, whose webhooks the one ``webhook_secret``
    signs (sorted; empty without it). Two or more can forge each other's webhooks."""
    if not settings.webhook_secret:
        return []
    own = _own_secrets(settings)
    return sorted({t for t in tenants if t not in own})


def has_secrets(settings: Settings) -> bool:
    """Whether any webhook can be signed."""
    return bool(settings.webhook_secret or settings.webhook_secrets.strip(" ,"))


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def sign(secrets: list[str] | str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64>`` per secret, space-separated."""
    payload = f"{msg_id}.{timestamp}.".encode() + body
    keys = [secrets] if isinstance(secrets, str) else secrets
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(k), payload, hashlib.sha256).digest()).decode()
        for k in keys
    )


def webhook_headers(secrets: list[str], msg_id: str, body: bytes) -> dict[str, str]:
    """Every header of one delivery attempt, signed now."""
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secrets, msg_id, timestamp, body),
        EVENT_HEADER: "job.finished",
    }


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = 300.0,
    at: float | None = None,
) -> bool:
    """True if one of the ``webhook-signature`` entries signs ``body`` with ``secret`` and the
    timestamp is within ``tolerance_s`` (headers looked up case-insensitively)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, timestamp = lower[ID_HEADER], int(lower[TIMESTAMP_HEADER])
        given = lower[SIGNATURE_HEADER].split()
    except (KeyError, ValueError):
        return False
    if abs((at if at is not None else time.time()) - timestamp) > tolerance_s:
        return False
    try:
        expected = sign(secret, msg_id, timestamp, body)
    except ValueError:  # a malformed whsec_ secret
        return False
    return any(hmac.compare_digest(expected.encode(), g.encode()) for g in given)


async def _post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST to the first checked address, with the URL's host for Host, SNI and TLS."""
    url = httpx.URL(target.url)
    pinned = url.copy_with(host=target.addresses[0])
    extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
    host = target.host if ":" not in target.host else f"[{target.host}]"
    default = 443 if url.scheme == "https" else 80
    headers = {**headers, "Host": host if target.port == default else f"{host}:{target.port}"}
    async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
        response = await client.post(pinned, content=body, headers=headers, extensions=extensions)
    return response.status_code


def deliver_once(
    target: Target, body: bytes, secrets: list[str], msg_id: str, timeout_s: float
) -> bool:
    """POST once within ``timeout_s`` overall (a receiver that drips bytes is cut off)."""
    headers = webhook_headers(secrets, msg_id, body)
    try:
        status = asyncio.run(asyncio.wait_for(_post(target, body, headers, timeout_s), timeout_s))
    except (httpx.HTTPError, asyncio.TimeoutError, OSError) as exc:
        log.warning("webhook %s failed: %s", target.url, type(exc).__name__)
        return False
    if 200 <= status < 300:
        return True
    log.warning("webhook %s answered %s", target.url, status)
    return False


def claim_webhook(ctx: Context, job_id: str) -> JobRecord | None:
    """Take the job's due webhook for one attempt (None: not due, or taken elsewhere).

    The claim counts the attempt and leases the entry for twice the attempt deadline, so
    another sender skips it; if this process dies, the entry is due again after the lease.
    """
    lease_s = 2 * ctx.settings.webhook_timeout_seconds + 5
    claimed = {"ok": False}
    t = ctx.store.now()  # the lease is on the store's clock, like the outbox's due times

    def fn(job: JobRecord) -> None:
        due = job.webhook_due
        claimed["ok"] = job.webhook is not None and due is not None and due <= t
        if claimed["ok"] and job.webhook is not None:
            job.webhook.attempts += 1
            job.webhook.next_at = t + lease_s

    job = ctx.store.update(job_id, fn)
    return job if claimed["ok"] else None


def _record(ctx: Context, job_id: str, attempt: int, error: str | None, final: bool) -> None:
    """Store an attempt's outcome: delivered, failed for good, or due again after a backoff
    (``webhook_backoff_seconds``, doubled each attempt)."""
    settings = ctx.settings
    t = ctx.store.now()

    def fn(job: JobRecord) -> None:
        hook = job.webhook
        if hook is None or hook.status != "pending" or hook.attempts != attempt:
            return  # another attempt's outcome came first
        hook.error = error
        if error is None:
            hook.status, hook.delivered_at, hook.next_at = "delivered", t, None
        elif final or hook.attempts >= settings.webhook_max_attempts:
            hook.status, hook.next_at = "failed", None
        else:
            hook.next_at = t + settings.webhook_backoff_seconds * 2 ** (hook.attempts - 1)

    ctx.store.update(job_id, fn)


def send_job_webhook(ctx: Context, job_id: str) -> bool:
    """One delivery attempt of the job's due webhook: claim it, POST the job's public JSON,
    signed, and record the outcome (a failed attempt is retried later by the outbox sender).

    False when nothing was due, the tenant has no signing secret or the URL is refused
    (both final), or the attempt failed.
    """
    job = claim_webhook(ctx, job_id)
    if job is None or job.webhook is None or not job.callback_url:
        return False
    attempt = job.webhook.attempts
    secrets = tenant_secrets(ctx.settings, job.tenant)
    if not secrets:
        log.error("job %s: no webhook secret for tenant %r; not sent", job_id, job.tenant)
        _record(ctx, job_id, attempt, "webhook_not_configured", final=True)
        return False
    try:
        target = resolve_callback(job.callback_url, ctx.settings.webhook_allowed_hosts)
    except CallbackRefused as exc:
        log.error("webhook %s refused: %s", job.callback_url, exc.message)
        _record(ctx, job_id, attempt, exc.code, final=True)
        return False
    body = job_view(job).model_dump_json().encode()
    timeout_s = ctx.settings.webhook_timeout_seconds
    ok = deliver_once(target, body, secrets, f"msg_{job.id}", timeout_s)
    _record(ctx, job_id, attempt, None if ok else "delivery_failed", final=False)
    if not ok and attempt >= ctx.settings.webhook_max_attempts:
        log.error("webhook %s gave up after %d attempts", job.callback_url, attempt)
    return ok
