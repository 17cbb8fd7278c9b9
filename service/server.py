"""Run a gateway app with uvicorn until it is stopped (``facecloak serve`` calls this)."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI


def configure_logging(log_level: str) -> None:
    """Timestamped log lines on stderr at ``log_level``."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
    """Serve ``app``, then exit the process without waiting for running embedded jobs.

    Embedded photos still running after the grace period are retried at the next start;
    their threads cannot be interrupted, so the process exits instead of joining them.
    """
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
    logging.shutdown()
    os._exit(0)
