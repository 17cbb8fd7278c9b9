"""A Celery worker whose handlers are the fast stand-ins (for queue-mechanics tests).

``python tests/fake_worker.py --queues gpu,cpu --name w1@%h``; ``FC_FAKE_DELAY`` sets seconds
per photo. Built like ``facecloak worker`` (settings, handlers, app, tasks once), with the
fakes passed through the public API.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facecloak.settings import Settings
from tests.service_fixtures import fake_handlers, fake_verify
from workers.celery_app import make_celery, worker_argv
from workers.tasks import Worker, register_tasks


def main() -> int:
    """Parse ``--queues/--name/--log-level`` and run the worker until it is stopped."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--queues", default="gpu,cpu")
    parser.add_argument("--name", default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    settings = Settings()
    delay = float(os.environ.get("FC_FAKE_DELAY", "0.05"))
    app = make_celery(settings)
    register_tasks(app, Worker(settings, fake_handlers(delay), fake_verify))
    app.worker_main(worker_argv(args.queues.split(","), 1, args.name, args.log_level))
    return 0


if __name__ == "__main__":
    sys.exit(main())
