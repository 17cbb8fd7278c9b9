"""Run one item of a job: claim it, hand it to its kind's handler, commit the result.

Shared by the embedded executor and the Celery tasks. The runner knows no job kind: it
looks up the handler registered for ``job.kind`` in the :data:`Handlers` it is given
(``workers.handlers.build_handlers`` builds the real ones; tests pass fakes), so importing
this never imports torch.

Safety against duplicate runs and dead workers:

- A run *claims* an item (status ``running``, a fresh owner token, a lease) atomically; a
  second delivery of the same item while the lease is alive does nothing.
- The result is written under a key of its own run (the attempt number the claim took),
  and only the run that still owns the item when it finishes *commits* it into the record;
  a loser deletes its blob. So a task that runs twice cannot corrupt a result. The commit
  also deletes earlier runs' result files (a run killed between saving and committing
  leaves one), as does the sweep that fails an item after its last run.
- A heartbeat thread extends the lease. :func:`~facecloak.contract.sweeps.reap` (run
  periodically by the gateway) puts items whose lease ran out back in the queue, or fails
  them once ``max_attempts`` is spent.
- The heartbeat extends the lease only while the run makes progress: past
  ``task_time_limit_seconds``, or ``progress_timeout_seconds`` without a ``progress`` call,
  it fails the item itself (``time_limit`` / ``no_progress``) and stops. On a pool thread
  the handler runs on a thread of its own, which is abandoned then, so a hung handler
  cannot take a thread of the embedded pool with it (see :mod:`.liveness`).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, ValidationError

from facecloak.contract.context import Context
from facecloak.contract.kinds import Handlers, ProgressFn, Verifier, get_kind
from facecloak.contract.liveness import GaveUp, Heartbeat, Watch, run_guarded
from facecloak.contract.options import ItemOutcome, JobError
from facecloak.contract.records import ItemRecord, JobRecord, now, progress_unit
from facecloak.contract.storage import BlobNotFound
from facecloak.contract.sweeps import drop_results, expire, reap, result_key, sweep_orphans

log = logging.getLogger(__name__)

Finished = Callable[[JobRecord], None]

__all__ = [
    "Context",
    "JobCanceled",
    "StepLimitExceeded",
    "TimeLimitExceeded",
    "expire",
    "original_key",
    "reap",
    "result_key",
    "run_item",
    "run_verify",
    "sweep_orphans",
]


class JobCanceled(Exception):
    """Raised from the progress callback to stop work on a canceled job."""


class TimeLimitExceeded(Exception):
    """Raised from the progress callback once an item ran past ``task_time_limit_seconds``."""


class StepLimitExceeded(Exception):
    """Raised from the progress callback when an item needs more attack steps (over all its
    faces) than ``max_steps_per_photo``."""

    def __init__(self, total: int, limit: int) -> None:
        super().__init__(f"{total} steps > {limit}")
        self.total, self.limit = total, limit


def original_key(job_id: str, index: int) -> str:
    """Where an uploaded photo is kept until it is processed."""
    return f"jobs/{job_id}/in/{index}"


def _claim(ctx: Context, job_id: str, index: int, token: str) -> tuple[JobRecord | None, bool]:
    state = {"claimed": False}
    t = ctx.store.now()  # leases are on the store's clock

    def fn(job: JobRecord) -> None:
        state["claimed"] = False
        item = job.items[index]
        if job.done or item.done:
            return
        if item.status == "running" and (item.lease_until or 0) > t:
            return  # another run holds it
        if item.attempts >= ctx.settings.max_attempts:
            item.status = "failed"
            item.error = JobError(
                code="worker_lost",
                message=f"processing stopped {item.attempts} time(s) before finishing "
                "(worker died or hit the time limit)",
            )
            item.worker = None
            item.lease_until = None
            job.settle(ctx.settings.result_ttl_seconds)
            return
        item.status = "running"
        item.attempts += 1
        item.worker = token
        item.lease_until = t + ctx.settings.lease_seconds
        if job.status == "queued":
            job.status = "running"
            job.started_at = job.started_at or now()
        state["claimed"] = True

    job = ctx.store.update(job_id, fn)
    return job, state["claimed"]


def _progress(ctx: Context, job: JobRecord, index: int, token: str, watch: Watch) -> ProgressFn:
    """The handler's ``progress(done, total)``: recorded on the item in the kind's unit.

    Each call keeps the lease alive (``watch.beat``); a run given up stops at its next call.
    For kinds that count attack steps, a total past ``max_steps_per_photo`` stops the item.
    """
    job_id = job.id
    limit = ctx.settings.max_steps_per_photo if progress_unit(job.kind) == "steps" else 0

    def report(done: int, total: int) -> None:
        if watch.verdict is not None:
            raise GaveUp(watch.verdict.code, watch.verdict.message)
        watch.beat()
        if limit and total > limit:
            raise StepLimitExceeded(total, limit)

        def fn(job: JobRecord) -> None:
            item = job.items[index]
            if item.worker == token:
                item.progress_done = max(0, min(done, total))
                item.progress_total = max(0, total)

        job = ctx.store.update(job_id, fn)
        if job is None or job.status == "canceled":
            raise JobCanceled(job_id)
        if time.monotonic() > watch.deadline:
            raise TimeLimitExceeded(job_id)

    return report


def _failed(filename: str, code: str, message: str) -> ItemOutcome:
    return ItemOutcome(
        filename=filename, status="failed", error=JobError(code=code, message=message)
    )


def _crash(filename: str, exc: BaseException) -> ItemOutcome:
    name = type(exc).__name__
    code = "time_limit" if name == "SoftTimeLimitExceeded" else "internal_error"
    log.error("processing %s failed:\n%s", filename, traceback.format_exc())
    return _failed(filename, code, f"{name}: {exc}")


def _handle(
    handlers: Handlers, job: JobRecord, item: ItemRecord, data: bytes, progress: ProgressFn
) -> ItemOutcome:
    """Validate the job's options with its kind's model and run the kind's handler."""
    handler = handlers.get(job.kind)
    if handler is None:
        return _failed(item.filename, "unsupported_kind", f"no handler for {job.kind!r} jobs here")
    try:
        options: BaseModel = get_kind(job.kind).options.model_validate(job.options)
    except ValidationError as exc:
        return _failed(item.filename, "invalid_options", str(exc))
    try:
        return handler(data, item.filename, options, progress)
    except JobCanceled:
        return ItemOutcome(filename=item.filename, status="failed")
    except TimeLimitExceeded:
        return _failed(item.filename, "time_limit", "processing took too long")
    except GaveUp as exc:
        return _failed(item.filename, exc.code, exc.message)
    except StepLimitExceeded as exc:
        message = (
            f"this photo needs {exc.total} attack steps over all its faces, more than the "
            f"limit of {exc.limit}; send fewer faces per photo (crop) or ask for fewer steps"
        )
        return _failed(item.filename, "too_many_steps", message)
    except Exception as exc:
        return _crash(item.filename, exc)


def run_item(
    ctx: Context,
    handlers: Handlers,
    job_id: str,
    index: int,
    on_finished: Finished,
    isolate: bool | None = None,
) -> None:
    """Process item ``index`` of job ``job_id`` (a no-op if it is done or held elsewhere).

    ``isolate``: run the handler on a thread of its own and return as soon as the run is
    given up, abandoning that thread (a Python thread cannot be killed). The default does so
    on any thread but the main one: a pool thread (the embedded executor) must get back to
    its queue, while on the main thread (a Celery prefork or solo worker) Celery's soft time
    limit is raised in the handler and its hard limit ends the process.
    """
    token = uuid.uuid4().hex
    job, claimed = _claim(ctx, job_id, index, token)
    if job is None:
        return
    if not claimed:
        if job.done and job.finished_at and job.items[index].worker is None:
            _cleanup_originals(ctx, job)
            drop_results(ctx, job_id, job.items[index])
        return
    item = job.items[index]
    cfg = ctx.settings
    watch = Watch(cfg.task_time_limit_seconds, cfg.progress_timeout_seconds)
    heartbeat = Heartbeat(
        watch,
        max(0.2, cfg.lease_seconds / 3),
        renew=partial(_renew, ctx, job_id, index, token),
        give_up=partial(_give_up, ctx, job_id, item, token, watch, on_finished),
        name=f"heartbeat-{job_id}-{index}",
    )
    heartbeat.start()
    work = partial(_work, ctx, handlers, job, item, token, watch)
    if isolate is None:
        isolate = threading.current_thread() is not threading.main_thread()
    try:
        if isolate:
            outcome = run_guarded(work, watch, f"facecloak-item-{job_id}-{index}")
        else:
            outcome = work()
    finally:
        heartbeat.stopped.set()
    if outcome is None:
        return  # given up: the heartbeat failed the item
    _commit(ctx, job_id, item, token, outcome, time.monotonic() - watch.started, on_finished)


def _work(
    ctx: Context, handlers: Handlers, job: JobRecord, item: ItemRecord, token: str, watch: Watch
) -> ItemOutcome:
    try:
        data = ctx.storage.get(item.original_key or original_key(job.id, item.index))
    except BlobNotFound:
        return _failed(item.filename, "original_missing", "the uploaded photo is gone")
    progress = _progress(ctx, job, item.index, token, watch)
    return _handle(handlers, job, item, data, progress)


def _renew(ctx: Context, job_id: str, index: int, token: str) -> None:
    """Extend the lease of a run that still owns its item (the heartbeat's tick)."""
    until = ctx.store.now() + ctx.settings.lease_seconds

    def fn(job: JobRecord) -> None:
        item = job.items[index]
        if item.worker == token and not item.done:
            item.lease_until = until

    ctx.store.update(job_id, fn)


def _give_up(
    ctx: Context,
    job_id: str,
    claimed: ItemRecord,
    token: str,
    watch: Watch,
    on_finished: Finished,
    verdict: GaveUp,
) -> None:
    """Fail the item of a run past its deadline or silent too long (its result comes late
    or never and is discarded)."""
    log.error("job %s photo %s: %s", job_id, claimed.index, verdict.message)
    outcome = _failed(claimed.filename, verdict.code, verdict.message)
    seconds = time.monotonic() - watch.started
    _commit(ctx, job_id, claimed, token, outcome, seconds, on_finished)


def _commit(
    ctx: Context,
    job_id: str,
    claimed: ItemRecord,
    token: str,
    outcome: ItemOutcome,
    seconds: float,
    on_finished: Finished,
) -> None:
    """Save the result under this run's key, commit it if the run still owns the item, and
    delete what is not used (a lost race's blob, earlier runs' blobs, the original)."""
    index, key = claimed.index, None
    if outcome.status == "protected" and outcome.output is not None:
        key = result_key(job_id, index, claimed.attempts)
        ctx.storage.put(key, outcome.output)
    state = {"owner": False, "finished": False}

    def fn(job: JobRecord) -> None:
        item = job.items[index]
        state["owner"] = item.worker == token and not item.done
        state["finished"] = False
        if not state["owner"]:
            return
        item.worker, item.lease_until, item.seconds = None, None, round(seconds, 3)
        if job.status == "canceled":
            item.status = "canceled"
        else:
            item.status = outcome.status
            item.faces = outcome.faces
            item.faces_done = outcome.faces if outcome.status == "protected" else item.faces_done
            item.report = outcome.report
            item.error = outcome.error
            item.result_key = key
        state["finished"] = job.settle(ctx.settings.result_ttl_seconds)

    job = ctx.store.update(job_id, fn)
    if key and (job is None or not state["owner"] or job.status == "canceled"):
        ctx.storage.delete(key)  # lost the race or canceled: our blob is not used
    if job is None or not state["owner"]:
        return
    drop_results(ctx, job_id, job.items[index], before=claimed.attempts)
    ctx.storage.delete(job.items[index].original_key or original_key(job_id, index))
    if outcome.status == "protected":
        ctx.store.add_stats(faces=outcome.faces, face_seconds=seconds)
    if state["finished"]:
        _cleanup_originals(ctx, job)
        on_finished(job)


def _cleanup_originals(ctx: Context, job: JobRecord) -> None:
    ctx.storage.delete_prefix(f"jobs/{job.id}/in")


def run_verify(
    ctx: Context, verifier: Verifier, original: str, protected: str, models: list[str] | None
) -> dict[str, Any]:
    """The verification report of two stored photos, as JSON; the blobs are deleted afterwards.

    A photo the verifier refuses comes back as ``{"error": {"code", "message"}}``.
    """
    from facecloak.images import ImageError

    try:
        report = verifier(ctx.storage.get(original), ctx.storage.get(protected), models)
    except ImageError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}
    finally:
        ctx.storage.delete(original)
        ctx.storage.delete(protected)
    if isinstance(report, BaseModel):
        dumped: dict[str, Any] = report.model_dump(mode="json")
        return dumped
    return dict(report)
