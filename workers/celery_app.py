"""The Celery application (distributed mode): broker and result backend from settings.

Queues: ``gpu`` for attack and verification work, ``cpu`` for light work (webhooks).
Reliability settings: ``acks_late`` with ``reject_on_worker_lost`` (a message is acknowledged
only after its task ends, and requeued if the worker process dies), prefetch 1, hard and soft
time limits, and a Redis visibility timeout longer than the longest task so a slow task is
not delivered twice. Duplicate runs are harmless anyway (see :mod:`facecloak.contract.runner`).
"""

from __future__ import annotations

from celery import Celery

from facecloak.settings import Settings, get_settings

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
PROTECT_TASK = "facecloak.protect_item"
VERIFY_TASK = "facecloak.verify"
WEBHOOK_TASK = "facecloak.deliver_webhook"


def make_celery(settings: Settings) -> Celery:
    """A configured Celery app for ``settings.broker_url``."""
    url = settings.broker_url or "redis://localhost:6379/0"
    limit = settings.task_time_limit_seconds
    app = Celery("facecloak", broker=url, backend=url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=limit,
        task_soft_time_limit=max(limit - 30, 1),
        broker_transport_options={"visibility_timeout": 2 * limit + 60},
        result_backend_transport_options={"visibility_timeout": 2 * limit + 60},
        result_expires=3600,
        task_default_queue=CPU_QUEUE,
        task_routes={
            PROTECT_TASK: {"queue": GPU_QUEUE},
            VERIFY_TASK: {"queue": GPU_QUEUE},
            WEBHOOK_TASK: {"queue": CPU_QUEUE},
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )
    return app


app = make_celery(get_settings())
app.conf.imports = ("workers.tasks",)
