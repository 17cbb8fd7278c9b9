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

from facecloak.contract.context import Context
from facecloak.contract.kinds import Handlers, Probe, Verifier
from facecloak.settings import Settings
from service import errors
from service.auth import KeyRing
from service.deps import KnownModels, State
from service.dispatch import Dispatcher, make_dispatcher
from service.jobs import JobService
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.reaper import Reaper
from service.routes import router

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DESCRIPTION = """Protect face photos from face recognition.

Authenticate with `X-API-Key`. Submit photos to `POST /v1/protect` (202 + `Location`), poll
`GET /v1/jobs/{id}` (or pass `callback_url` for a signed webhook), then download
`GET /v1/jobs/{id}/result`. Every error is `{"error": {"code", "message", "details"}}`.

Webhooks: `POST callback_url` with the job JSON and
`X-FaceCloak-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
"""


def create_app(
    settings: Settings,
    *,
    handlers: Handlers | None = None,
    verifier: Verifier | None = None,
    readiness: Mapping[str, Probe] | None = None,
    known_models: KnownModels | None = None,
    ctx: Context | None = None,
    dispatcher: Dispatcher | None = None,
    background: bool = True,
) -> FastAPI:
    """The gateway for ``settings``.

    ``handlers`` (job kind -> handler) and ``verifier`` run the work in embedded mode (no
    broker); in distributed mode the workers hold them. ``readiness`` adds named probes to
    ``/readyz``. ``known_models`` lists the recognizers callers may name (None: not checked
    here). ``background=False`` skips the reaper thread (tests drive sweeps).
    """
    ctx = ctx or Context.from_settings(settings)
    dispatcher = dispatcher or make_dispatcher(ctx, handlers, verifier)
    st = State(
        settings=settings,
        ctx=ctx,
        dispatcher=dispatcher,
        jobs=JobService(ctx, dispatcher),
        keys=KeyRing(settings.api_keys),
        limiter=RateLimiter(settings.rate_limit_per_minute),
        metrics=Metrics(ctx.store, dispatcher),
        readiness=dict(readiness or {}),
        known_models=known_models,
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
        st.metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        st.metrics.latency.labels(request.method, route).observe(time.perf_counter() - start)
        return response

    app.include_router(router)
    return app
