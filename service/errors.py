"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise anywhere in a route to answer with the error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSONResponse in the error shape."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Route every exception the app can meet to the error shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return error_response(422, "invalid_request", "the request is invalid", {"errors": errors})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        return client_gone(request)

    @app.middleware("http")
    async def _unexpected(request: Request, call_next: Any) -> Any:
        try:
            return await call_next(request)
        except ClientDisconnect:
            return client_gone(request)
        except Exception as exc:
            if _is_unavailable(exc):
                log.warning("backend unavailable: %s", exc)
                return error_response(
                    503,
                    "unavailable",
                    "a backend (job store, broker or storage) is unreachable; retry later",
                    headers={"Retry-After": "5"},
                )
            log.exception("unhandled error")
            return error_response(500, "internal_error", "an internal error occurred")


def client_gone(request: Request) -> JSONResponse:
    """The client hung up mid-request (or its body was refused by
    :class:`service.limits.BodyLimit`, which answered already): an info line, not an error."""
    refused = request.scope.get("facecloak.body_refused")
    what = f"request body refused ({refused})" if refused else "client disconnected"
    log.info("%s during %s %s", what, request.method, request.url.path)
    return error_response(400, "client_disconnected", "the client closed the connection")


def _is_unavailable(exc: BaseException) -> bool:
    names = {t.__name__ for t in type(exc).__mro__}
    return bool(names & _UNAVAILABLE)


_UNAVAILABLE = {
    "ConnectionError",
    "TimeoutError",
    "OperationalError",
    "EndpointConnectionError",
    "OSError",
    "BusyLoadingError",
}
