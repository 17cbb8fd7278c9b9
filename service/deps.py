"""What the routes depend on: the app's :class:`State`, the caller's tenant, error docs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from facecloak.contract.captcha_pool import CaptchaPool
from facecloak.contract.context import Context
from facecloak.contract.kinds import Probe
from facecloak.settings import Settings
from service.auth import API_KEY_HEADER, KeyRing, check_bearer
from service.dispatch import Dispatcher
from service.errors import ApiError
from service.jobs import JobService
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.schemas import ErrorResponse
from service.verify_pool import VerifyPool

KnownModels = Callable[[], Collection[str]]
"""The recognizer names callers may choose (``None`` on the app: names are checked later,
by the workers)."""


@dataclass
class State:
    """Everything the routes use, built once per app by ``create_app``."""

    settings: Settings
    ctx: Context
    dispatcher: Dispatcher
    jobs: JobService
    keys: KeyRing
    limiter: RateLimiter
    metrics: Metrics
    auth_failures: RateLimiter = field(default_factory=lambda: RateLimiter(20))
    readiness: Mapping[str, Probe] = field(default_factory=dict)
    known_models: KnownModels | None = None
    verifies: VerifyPool = field(default_factory=lambda: VerifyPool(4, 300.0))
    captchas: CaptchaPool | None = None
    captcha_attempts: RateLimiter = field(default_factory=lambda: RateLimiter(60))


def state(request: Request) -> State:
    """The app's :class:`State`."""
    st: State = request.app.state.fc
    return st


_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def tenant(request: Request, key: Annotated[str | None, Depends(_api_key)] = None) -> str:
    """The caller's tenant from ``X-API-Key`` (401 otherwise; 429 once a client address sent
    ``auth_failures_per_minute`` wrong keys). Only wrong keys are limited: a correct key from
    a limited address is served, so guessing is slowed without locking out the tenants that
    share an address (a NAT, a proxy)."""
    st = state(request)
    try:
        return st.keys.tenant(key)
    except ApiError as exc:
        if exc.code == "invalid_api_key":
            st.auth_failures.check(request.client.host if request.client else "unknown")
        raise


def metrics_access(request: Request) -> None:
    """``Authorization: Bearer <FACECLOAK_METRICS_TOKEN>`` (wrong tokens count as wrong keys)."""
    st = state(request)
    try:
        check_bearer(st.settings.metrics_token, request.headers.get("authorization"))
    except ApiError as exc:
        if exc.code == "invalid_metrics_token":
            st.auth_failures.check(request.client.host if request.client else "unknown")
        raise


Tenant = Annotated[str, Depends(tenant)]
St = Annotated[State, Depends(state)]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "Missing or invalid API key",
        404: "No such job (or another tenant's)",
        422: "Invalid request",
        503: "A backend is unreachable",
    }.items()
}
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorResponse, "description": "Malformed multipart body"},
    413: {"model": ErrorResponse, "description": "Too large (bytes, pixels, photos, zip)"},
    415: {"model": ErrorResponse, "description": "Not a multipart body, or unsupported format"},
    429: {"model": ErrorResponse, "description": "Rate limited (see Retry-After)"},
}
