"""The FastAPI application factory: ``create_app(settings, handlers=..., ...)``.

Everything the gateway cannot import itself is injected: the item handlers and the
verifier that run jobs in embedded mode, readiness probes (e.g. "models available"), and
the recognizer names callers may choose. ``facecloak serve`` builds them once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from facecloak.contract.captcha_pool import CaptchaPool, RedisCaptchaPool
from facecloak.contract.context import Context
from facecloak.contract.kinds import Handlers, Probe, Verifier
from facecloak.contract.webhooks import has_secrets, shared_secret_tenants
from facecloak.settings import Settings
from service import errors
from service.auth import KeyRing, parse_keys
from service.deps import KnownModels, State
from service.dispatch import Dispatcher, make_dispatcher
from service.jobs import JobService
from service.limits import BodyLimit
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.reaper import Reaper
from service.routes import router
from service.verify_pool import VerifyPool

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""HTTP methods counted by name in metrics; any other is counted as ``other``."""
DESCRIPTION = """Protect face photos from face recognition.

Authenticate with `X-API-Key`. Submit photos to `POST /v1/protect` (202 + `Location`), poll
`GET /v1/jobs/{id}` (or pass `callback_url` for a signed webhook), then download
`GET /v1/jobs/{id}/result`. Every error is `{"error": {"code", "message", "details"}}`.

Webhooks: `POST callback_url` with the job JSON and the Standard Webhooks headers
`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256(secret,
"<id>.<timestamp>.<raw body>")>` (several space-separated during a key rotation).
"""


def create_app(
    settings: Settings,
    *,
    handlers: Handlers | None = None,
    verifier: Verifier | None = None,
    readiness: Mapping[str, Probe] | None = None,
    known_models: KnownModels | None = None,
    captcha_pool: CaptchaPool | None = None,
    ctx: Context | None = None,
    dispatcher: Dispatcher | None = None,
    background: bool = True,
) -> FastAPI:
    """The gateway for ``settings``.

    ``handlers`` (job kind -> handler) and ``verifier`` run the work in embedded mode (no
    broker); in distributed mode the workers hold them. ``readiness`` adds named probes to
    ``/readyz``. ``known_models`` lists the recognizers callers may name (None: not checked
    here). ``captcha_pool`` serves ``/v1/captchas`` (None: a Redis pool in distributed mode,
    none in embedded mode unless the CLI passes one it fills). ``background=False`` skips the
    reaper thread (tests drive sweeps).
    """
    ctx = ctx or Context.from_settings(settings)
    dispatcher = dispatcher or make_dispatcher(ctx, handlers, verifier)
    _check_webhook_secrets(settings, dispatcher.mode)
    st = State(
        settings=settings,
        ctx=ctx,
        dispatcher=dispatcher,
        jobs=JobService(ctx, dispatcher),
        keys=KeyRing(settings.api_keys),
        limiter=RateLimiter(settings.rate_limit_per_minute),
        auth_failures=RateLimiter(settings.auth_failures_per_minute),
        metrics=Metrics(ctx.store, dispatcher),
        readiness=dict(readiness or {}),
        known_models=known_models,
        captchas=captcha_pool if captcha_pool is not None else _redis_captchas(settings),
        captcha_attempts=RateLimiter(settings.captcha_attempts_per_minute),
        verifies=VerifyPool(settings.verify_concurrency, settings.verify_timeout_seconds),
    )
    reaper = Reaper(ctx, dispatcher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        if background:
            reaper.start()
        try:
            yield
        finally:
            reaper.stopped.set()
            dispatcher.stop()

    app = FastAPI(
        title="FaceCloak", version=API_VERSION, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.fc = st
    app.state.reaper = reaper
    errors.install(app)

    @app.middleware("http")
    async def _observe(request: Request, call_next: Any) -> Any:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        method = request.method if request.method in METHODS else "other"
        st.metrics.requests.labels(method, route, str(response.status_code)).inc()
        st.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
        return response

    app.include_router(router)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        timeout_s=settings.request_body_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
    )
    return app


def _redis_captchas(settings: Settings) -> CaptchaPool | None:
    """Distributed mode's CAPTCHA pool, in the job store's Redis (filled by
    ``facecloak captcha fill``); None in embedded mode or with CAPTCHAs off."""
    url = settings.jobstore_url or settings.broker_url
    if not settings.captcha_pool or not url or not url.startswith(("redis://", "rediss://")):
        return None
    return RedisCaptchaPool.from_url(url)


def _check_webhook_secrets(settings: Settings, mode: str) -> None:
    """Distributed mode refuses to start without a webhook secret, or when the shared
    ``webhook_secret`` would sign the webhooks of several tenants (each could then forge the
    others'); embedded mode warns (and refuses ``callback_url`` for tenants without one)."""
    if not has_secrets(settings):
        if mode == "distributed":
            raise RuntimeError(
                "set FACECLOAK_WEBHOOK_SECRETS ('tenant:secret,...') or FACECLOAK_WEBHOOK_SECRET: "
                "a distributed gateway does not start without webhook signing keys"
            )
        log.warning("no webhook secret configured: submits with a callback_url are refused")
        return
    shared = shared_secret_tenants(settings, parse_keys(settings.api_keys).values())
    if len(shared) < 2:
        return
    problem = (
        f"FACECLOAK_WEBHOOK_SECRET (webhook_secret) is the one webhook signing key of "
        f"{len(shared)} tenants without their own ({', '.join(shared)}), so each can forge the "
        "others' webhooks: give every tenant its own key in FACECLOAK_WEBHOOK_SECRETS "
        "('tenant:secret,...')"
    )
    if mode == "distributed":
        raise RuntimeError(f"{problem}; a distributed gateway does not start like this")
    log.warning(problem)
