"""``facecloak serve`` and ``facecloak worker``: settings, runtime and handlers built once, here."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from facecloak.cli_tools import model_store

if TYPE_CHECKING:
    from facecloak.settings import Settings


def _embedded_app(settings: Settings) -> Any:
    """The gateway running jobs in this process: runtime and handlers built once, here."""
    from facecloak.commands_captcha import embedded_captcha_pool
    from service.app import create_app
    from workers.handlers import build_handlers, build_verifier, models_probe, recognizer_names
    from workers.jobs.runtime import Runtime

    runtime = Runtime(settings)
    return create_app(
        settings,
        handlers=build_handlers(runtime),
        verifier=build_verifier(runtime),
        readiness={"models": models_probe(runtime.store)},
        known_models=recognizer_names(runtime.store),
        captcha_pool=embedded_captcha_pool(settings),
    )


def _gateway_app(settings: Settings) -> Any:
    """The gateway sending jobs to Celery workers; model names are checked if models exist."""
    from service.app import create_app

    try:
        from workers.handlers import recognizer_names
    except ImportError:  # the gateway image ships neither workers/ nor models/
        return create_app(settings)
    return create_app(settings, known_models=recognizer_names(model_store(settings)))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the REST gateway: embedded jobs, or distributed when a broker URL is set."""
    from service.server import configure_logging, serve

    configure_logging(args.log_level)
    if settings.broker_url:
        app = _gateway_app(settings)
    else:
        try:
            app = _embedded_app(settings)
        except ImportError as exc:
            print(
                f"facecloak serve: embedded mode runs jobs in this process and needs the "
                f"engine ({exc}); install it or set FACECLOAK_BROKER_URL",
                file=sys.stderr,
            )
            return 2
    serve(app, args.host, args.port, args.log_level)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a Celery worker: settings, runtime, handlers, app and tasks built once, here."""
    import os

    from facecloak.contract.queues import QUEUES

    if not settings.broker_url:
        print("facecloak worker: set FACECLOAK_BROKER_URL=redis://HOST:PORT/N", file=sys.stderr)
        return 2
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        known = " and/or ".join(QUEUES)
        print(f"facecloak worker: unknown queue(s) {unknown}; use {known}", file=sys.stderr)
        return 2
    # The runtime is built here, before Celery forks its pool: probe CUDA through NVML so
    # that choosing the device does not initialise CUDA in the parent (not fork-safe).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    from workers.celery_app import make_celery, worker_argv
    from workers.handlers import build_handlers, build_verifier, build_warm_up
    from workers.jobs.runtime import Runtime
    from workers.tasks import Worker, register_tasks

    runtime = Runtime(settings)  # models load lazily, in each pool process (warm-up)
    worker = Worker(
        settings,
        build_handlers(runtime),
        build_verifier(runtime),
        build_warm_up(runtime) if settings.warm_up else None,
    )
    app = make_celery(settings)
    register_tasks(app, worker)
    app.worker_main(worker_argv(queues, args.concurrency, args.name, args.log_level))
    return 0


def add_service_commands(sub: Any) -> None:
    """The ``serve`` and ``worker`` subcommands."""
    serve = sub.add_parser(
        "serve", help="run the REST gateway (embedded jobs unless FACECLOAK_BROKER_URL is set)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker (needs FACECLOAK_BROKER_URL)")
    worker.add_argument("--queues", default="gpu,cpu", help="comma-separated: gpu, cpu")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="worker processes (one per GPU; models load once per process)",
    )
    worker.add_argument("--name", default=None, help="node name (default: facecloak@host-pid)")
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(func=cmd_worker)
