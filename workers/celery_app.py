"""The Celery application of the workers, built from a Settings object passed in.

Queues, task names and reliability settings (acks late, prefetch 1, time limits, a Redis
visibility timeout longer than the longest task) come from :mod:`facecloak.contract.queues`,
which the gateway uses too. Tasks are registered by :func:`workers.tasks.register_tasks`.
This module is light: no torch, no job code.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from celery import Celery

from facecloak.contract.queues import broker_url, celery_config
from facecloak.settings import Settings


def make_celery(settings: Settings) -> Celery:
    """A configured Celery app for ``settings.broker_url``."""
    url = broker_url(settings)
    app = Celery("facecloak", broker=url, backend=url)
    app.conf.update(celery_config(settings))
    return app


def worker_argv(
    queues: Sequence[str], concurrency: int, name: str | None, log_level: str
) -> list[str]:
    """``worker_main`` arguments: consume ``queues`` with ``concurrency`` processes."""
    node = name or f"facecloak-{socket.gethostname()}-{os.getpid()}@%h"
    return [
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "-n",
        node,
        "--loglevel",
        log_level,
        "--without-gossip",
        "--without-mingle",
    ]
