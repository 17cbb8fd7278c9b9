"""Run a gateway app with uvicorn until it is stopped (``facecloak serve`` calls this)."""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI

from facecloak.settings import Settings


def configure_logging(log_level: str) -> None:
    """Timestamped log lines on stderr at ``log_level``."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Connection limits: concurrent connections (503 past them), keep-alive idle time and
    the largest request head. Bodies are bounded in size and in the wait between chunks by
    :class:`service.limits.BodyLimit`."""
    return {
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
