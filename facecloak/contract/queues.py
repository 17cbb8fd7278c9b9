"""Celery queue and task names and the shared Celery configuration (no Celery import here).

The gateway sends tasks by name (``send_task``) and never imports the worker code; the
workers register tasks under these names (``workers.tasks.register_tasks``). Both build
their Celery app from :func:`celery_config`, so routing and reliability settings agree.
"""

from __future__ import annotations

from typing import Any

from facecloak.settings import Settings

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
QUEUES = (GPU_QUEUE, CPU_QUEUE)

RUN_ITEM_TASK = "facecloak.run_item"
"""``run_item(job_id, index)``: one item of a job of any kind (sent to the kind's queue)."""
VERIFY_TASK = "facecloak.verify"
"""``verify(original_key, protected_key, models)``: a verification report (JSON)."""
WEBHOOK_TASK = "facecloak.deliver_webhook"
"""``deliver_webhook(job_id)``: POST the finished job to its callback URL."""

DEFAULT_BROKER_URL = "redis://localhost:6379/0"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings: acks late, prefetch 1, time limits, a visibility timeout past them.

    A message is acknowledged only after its task ends and requeued if the worker process
    dies; the Redis visibility timeout is longer than the longest task so a slow task is not
    delivered twice (duplicates are harmless anyway, see :mod:`facecloak.contract.runner`).
    """
    limit = settings.task_time_limit_seconds
    visibility = {"visibility_timeout": 2 * limit + 60}
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": limit,
        "task_soft_time_limit": max(limit - 30, 1),
        "broker_transport_options": visibility,
        "result_backend_transport_options": visibility,
        "result_expires": 3600,
        "task_default_queue": CPU_QUEUE,
        "task_routes": {
            VERIFY_TASK: {"queue": GPU_QUEUE},
            WEBHOOK_TASK: {"queue": CPU_QUEUE},
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
    }


def broker_url(settings: Settings) -> str:
    """The broker (and result backend) URL."""
    return settings.broker_url or DEFAULT_BROKER_URL
