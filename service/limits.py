"""Request bodies bounded while they stream in: total bytes and the wait between chunks.

``Content-Length`` is not trusted to be present (chunked uploads have none): the ASGI
``receive`` is wrapped and counts the bytes as they arrive. Past the limit (or when the
client stalls) the middleware answers 413 ``request_too_large`` (or 408
``request_timeout``) itself, tells the app the client is gone and drops whatever the app
answers afterwards; nothing more of the body is read.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response

REFUSED = "facecloak.body_refused"
"""Scope key set when this middleware answered for the app (the app then sees a disconnect)."""


def too_large(limit: int, size: int | str | None = None) -> ApiError:
    """The 413 of a request body past ``limit`` bytes."""
    said = f"the request is {size} bytes" if size is not None else "the request is too large"
    return ApiError(413, "request_too_large", f"{said}; the limit is {limit} bytes")


class BodyLimit:
    """ASGI middleware: a request head of at most ``max_header_bytes``, at most ``max_bytes``
    of body, each chunk within ``timeout_s``.

    The server bounds only a head that arrives in pieces (h11's incomplete-event limit); one
    sent in a single write is complete when parsed, so the head is measured here too.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, timeout_s: float, max_header_bytes: int
    ) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = head_bytes(scope)
        if head > self.max_header_bytes:
            limit = self.max_header_bytes
            error = ApiError(
                431,
                "request_header_too_large",
                f"the request head is {head} bytes; the limit is {limit} bytes",
            )
            await _answer(scope, receive, send, error)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await _answer(scope, receive, send, too_large(self.max_bytes, length))
            return
        await _Guard(self, scope, receive, send).run()


class _Guard:
    """One request: counts the body, answers for the app when it must be cut off."""

    def __init__(self, limit: BodyLimit, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit, self.scope, self._receive, self._send = limit, scope, receive, send
        self.seen, self.complete, self.started, self.refused = 0, False, False, False

    async def run(self) -> None:
        await self.limit.app(self.scope, self.receive, self.send)

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # we answered already
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def receive(self) -> Message:
        if self.complete or self.refused:  # only waits for a disconnect now: no deadline
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self.limit.timeout_s)
        except asyncio.TimeoutError:
            wait = f"{self.limit.timeout_s:g}s"
            return await self._refuse(
                ApiError(408, "request_timeout", f"no request data for {wait}")
            )
        if message["type"] == "http.request":
            self.complete = not message.get("more_body", False)
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit.max_bytes:
                return await self._refuse(too_large(self.limit.max_bytes))
        return message

    async def _refuse(self, error: ApiError) -> Message:
        if not self.started:
            self.scope[REFUSED] = error.code
            await _answer(self.scope, self._receive, self._send, error)
        self.refused = True
        return {"type": "http.disconnect"}


async def _answer(scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
    response = error_response(
        error.status, error.code, error.message, headers={"Connection": "close"}
    )
    await response(scope, receive, send)


def head_bytes(scope: Scope) -> int:
    """Size of the request head as sent: request line and ``name: value`` header lines."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
    lines = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
    return len(scope["method"]) + target + 12 + lines


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
