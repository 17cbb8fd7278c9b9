"""``facecloak serve`` and ``facecloak worker``: ``register(subparsers)`` adds both.

``python -m service.commands serve|worker ...`` runs them without the main CLI.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence

from facecloak.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` and ``worker`` subcommands (each sets ``func``)."""
    serve = subparsers.add_parser(
        "serve", help="run the REST gateway (embedded jobs unless FACECLOAK_BROKER_URL is set)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=run_serve)

    worker = subparsers.add_parser(
        "worker", help="run a Celery worker (needs FACECLOAK_BROKER_URL)"
    )
    worker.add_argument("--queues", default="gpu,cpu", help="comma-separated: gpu, cpu")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="worker processes (one per GPU; models load once per process)",
    )
    worker.add_argument("--name", default=None, help="node name (default: facecloak@host-pid)")
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(func=run_worker)


def run_serve(args: argparse.Namespace) -> int:
    """Start uvicorn with the gateway."""
    import uvicorn

    from service.app import create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(get_settings()),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    # Embedded photos still running after the grace period are retried at the next start;
    # do not wait for them here (their threads cannot be interrupted).
    logging.shutdown()
    os._exit(0)


def run_worker(args: argparse.Namespace) -> int:
    """Start a Celery worker consuming ``--queues``."""
    settings = get_settings()
    if not settings.broker_url:
        print("facecloak worker: set FACECLOAK_BROKER_URL=redis://HOST:PORT/N", file=sys.stderr)
        return 2
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - {"gpu", "cpu"})
    if unknown or not queues:
        print(f"facecloak worker: unknown queue(s) {unknown}; use gpu and/or cpu", file=sys.stderr)
        return 2
    import workers.tasks  # noqa: F401  (registers the tasks)
    from workers.celery_app import app

    name = args.name or f"facecloak-{socket.gethostname()}-{os.getpid()}@%h"
    app.worker_main(
        [
            "worker",
            "-Q",
            ",".join(queues),
            "-c",
            str(args.concurrency),
            "-n",
            name,
            "--loglevel",
            args.log_level,
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point with just these two commands."""
    parser = argparse.ArgumentParser(prog="facecloak")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
