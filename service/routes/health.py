"""Liveness, readiness (job store, storage, broker or executor, injected probes), metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import St, State, metrics_access
from service.schemas import ErrorResponse, Health

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz(st: St) -> Health:
    """The process is up."""
    return Health(status="ok", mode=st.dispatcher.mode)


def probes(st: State) -> dict[str, Callable[[], None]]:
    """Every readiness check by name: the backends, then the app's injected probes."""
    executor = "broker" if st.dispatcher.mode == "distributed" else "executor"
    return {
        "jobstore": st.ctx.store.ping,
        "storage": st.ctx.storage.check,
        executor: st.dispatcher.check,
        **st.readiness,
    }


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="Readiness: job store, storage, broker/executor, models",
)
def readyz(st: St) -> JSONResponse:
    """200 when every dependency answers, 503 naming the failing ones otherwise (the reason
    is logged, not returned). Reads only: the storage probe writes nothing."""
    checks: dict[str, str] = {}
    for name, probe in probes(st).items():
        try:
            probe()
            checks[name] = "ok"
        except Exception:  # the details go to the log, never to the caller
            log.warning("readiness check %s failed", name, exc_info=True)
            checks[name] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", mode=st.dispatcher.mode, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (Authorization: Bearer <metrics token>)",
    dependencies=[Depends(metrics_access)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text"},
        401: {"model": ErrorResponse, "description": "Missing or invalid metrics token"},
        404: {"model": ErrorResponse, "description": "No metrics token configured"},
        429: {"model": ErrorResponse, "description": "Too many wrong tokens (Retry-After)"},
    },
)
def metrics(st: St) -> Response:
    """Jobs by state, queue depth, seconds per face, HTTP requests. Needs the operator's
    ``FACECLOAK_METRICS_TOKEN`` as a bearer token (off without one)."""
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)
