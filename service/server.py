"""Run a gateway app with uvicorn until it is stopped (``facecloak serve`` calls this)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from facecloak.settings import Settings

log = logging.getLogger(__name__)


def configure_logging(log_level: str) -> None:
    """Timestamped log lines on stderr at ``log_level``."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


class HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request head.

    uvicorn times out idle keep-alive connections but not a head that never ends (a client
    sending one header line at a time holds the connection forever). Here a connection whose
    current request head is not complete ``head_timeout_s`` after it opened, or after the
    previous response, is closed.
    """

    head_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info(
                "closing %s: no complete request head in %ss", self.client, self.head_timeout_s
            )
            self.transport.close()


def head_timeout_protocol(head_timeout_s: float) -> type[HeadTimeoutH11]:
    """A :class:`HeadTimeoutH11` subclass with its deadline set (uvicorn builds the instances)."""
    return type("HeadTimeoutH11", (HeadTimeoutH11,), {"head_timeout_s": head_timeout_s})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Connection limits: concurrent connections (503 past them), the deadline for a request
    head, keep-alive idle time and the largest request head. Bodies are bounded in size and
    in the wait between chunks by :class:`service.limits.BodyLimit`."""
    return {
        "http": head_timeout_protocol(settings.header_timeout_seconds),
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.timeout_keep_alive_seconds,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_graceful_shutdown": 10,
        "server_header": False,
    }


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
    """Serve ``app``, then exit the process without waiting for running embedded jobs.

    Embedded photos still running after the grace period are retried at the next start;
    their threads cannot be interrupted, so the process exits instead of joining them.
    """
    import uvicorn

    options = uvicorn_options(app.state.fc.settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **options)
    logging.shutdown()
    os._exit(0)
