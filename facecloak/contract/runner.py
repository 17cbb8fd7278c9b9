"""Run one photo of a job: claim it, protect it, commit the result, gather the job.

Shared by the embedded executor and the Celery tasks. Torch is imported only when a photo is
actually protected (``workers.jobs.protect`` is loaded lazily), so importing this is cheap.

Safety against duplicate runs and dead workers:

- A run *claims* an item (status ``running``, a fresh owner token, a lease) atomically; a
  second delivery of the same item while the lease is alive does nothing.
- The result is written under a key that includes the owner token, and only the run that
  still owns the item when it finishes *commits* it into the record; a loser deletes its
  blob. So a task that runs twice cannot corrupt a result.
- A heartbeat thread extends the lease. :func:`reap` (run periodically by the gateway) puts
  items whose lease ran out back in the queue, or fails them once ``max_attempts`` is spent.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facecloak.contract.options import JobError, PhotoOutcome, ProtectOptions
from facecloak.contract.records import JobRecord, now
from facecloak.contract.storage import BlobNotFound, Storage, open_storage
from facecloak.contract.store import JobStore, open_jobstore
from facecloak.settings import Settings

log = logging.getLogger(__name__)

Finished = Callable[[JobRecord], None]
Redispatch = Callable[[str, int], None]


class JobCanceled(Exception):
    """Raised from the progress callback to stop work on a canceled job."""


@dataclass
class Context:
    """What a run needs: settings, blob storage and the job store."""

    settings: Settings
    storage: Storage
    store: JobStore

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        """Open storage and job store as the settings say."""
        storage = open_storage(
            settings.storage_url, Path(settings.data_dir) / "blobs", settings.s3_endpoint_url
        )
        redis_url = settings.jobstore_url or settings.broker_url
        store = open_jobstore(redis_url, Path(settings.data_dir) / "jobs.sqlite3")
        return cls(settings, storage, store)


def original_key(job_id: str, index: int) -> str:
    """Where an uploaded photo is kept until it is processed."""
    return f"jobs/{job_id}/in/{index}"


def _claim(ctx: Context, job_id: str, index: int, token: str) -> tuple[JobRecord | None, bool]:
    state = {"claimed": False}

    def fn(job: JobRecord) -> None:
        state["claimed"] = False
        item = job.items[index]
        if job.done or item.done:
            return
        t = now()
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
            job.started_at = job.started_at or t
        state["claimed"] = True

    job = ctx.store.update(job_id, fn)
    return job, state["claimed"]


class _Heartbeat(threading.Thread):
    """Extends the item's lease while the photo is processed."""

    def __init__(self, ctx: Context, job_id: str, index: int, token: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}-{index}")
        self.ctx, self.job_id, self.index, self.token = ctx, job_id, index, token
        self.stopped = threading.Event()

    def run(self) -> None:
        period = max(0.2, self.ctx.settings.lease_seconds / 3)
        while not self.stopped.wait(period):

            def fn(job: JobRecord) -> None:
                item = job.items[self.index]
                if item.worker == self.token and not item.done:
                    item.lease_until = now() + self.ctx.settings.lease_seconds

            try:
                self.ctx.store.update(self.job_id, fn)
            except Exception:  # a store hiccup must not kill the run; the lease tolerates it
                log.warning("heartbeat failed for %s/%s", self.job_id, self.index, exc_info=True)


def _progress(ctx: Context, job_id: str, index: int, token: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        def fn(job: JobRecord) -> None:
            item = job.items[index]
            if item.worker == token:
                item.faces_done, item.faces_total = done, total

        job = ctx.store.update(job_id, fn)
        if job is None or job.status == "canceled":
            raise JobCanceled(job_id)

    return report


def _protect(data: bytes, filename: str, options: dict[str, Any], progress: Any) -> PhotoOutcome:
    from workers.jobs.protect import protect_photo  # torch: only on the worker side

    return protect_photo(data, filename, ProtectOptions.model_validate(options), progress)


def _verify(original: bytes, protected: bytes, models: list[str] | None) -> Any:
    from workers.jobs.verify import verify_pair  # torch: only on the worker side

    return verify_pair(original, protected, models)


def _crash(filename: str, exc: BaseException) -> PhotoOutcome:
    name = type(exc).__name__
    code = "time_limit" if name == "SoftTimeLimitExceeded" else "internal_error"
    log.error("protecting %s failed:\n%s", filename, traceback.format_exc())
    return PhotoOutcome(
        filename=filename, status="failed", error=JobError(code=code, message=f"{name}: {exc}")
    )


def run_item(ctx: Context, job_id: str, index: int, on_finished: Finished) -> None:
    """Process photo ``index`` of job ``job_id`` (a no-op if it is done or held elsewhere)."""
    token = uuid.uuid4().hex
    job, claimed = _claim(ctx, job_id, index, token)
    if job is None:
        return
    if not claimed:
        if job.done and job.finished_at and job.items[index].worker is None:
            _cleanup_originals(ctx, job)
        return
    item = job.items[index]
    start = time.monotonic()
    heartbeat = _Heartbeat(ctx, job_id, index, token)
    heartbeat.start()
    try:
        try:
            data = ctx.storage.get(item.original_key or original_key(job_id, index))
        except BlobNotFound:
            outcome = PhotoOutcome(
                filename=item.filename,
                status="failed",
                error=JobError(code="original_missing", message="the uploaded photo is gone"),
            )
        else:
            try:
                progress = _progress(ctx, job_id, index, token)
                outcome = _protect(data, item.filename, job.options, progress)
            except JobCanceled:
                outcome = PhotoOutcome(filename=item.filename, status="failed")
            except Exception as exc:
                outcome = _crash(item.filename, exc)
    finally:
        heartbeat.stopped.set()
    _commit(ctx, job_id, index, token, outcome, time.monotonic() - start, on_finished)


def _commit(
    ctx: Context,
    job_id: str,
    index: int,
    token: str,
    outcome: PhotoOutcome,
    seconds: float,
    on_finished: Finished,
) -> None:
    result_key = None
    if outcome.status == "protected" and outcome.output is not None:
        result_key = f"jobs/{job_id}/out/{index}-{token}"
        ctx.storage.put(result_key, outcome.output)
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
            item.result_key = result_key
        state["finished"] = job.settle(ctx.settings.result_ttl_seconds)

    job = ctx.store.update(job_id, fn)
    if result_key and (job is None or not state["owner"] or job.status == "canceled"):
        ctx.storage.delete(result_key)  # lost the race or canceled: our blob is not used
    if job is None or not state["owner"]:
        return
    ctx.storage.delete(job.items[index].original_key or original_key(job_id, index))
    if outcome.status == "protected":
        ctx.store.add_stats(faces=outcome.faces, face_seconds=seconds)
    if state["finished"]:
        _cleanup_originals(ctx, job)
        on_finished(job)


def _cleanup_originals(ctx: Context, job: JobRecord) -> None:
    ctx.storage.delete_prefix(f"jobs/{job.id}/in")


def reap(ctx: Context, redispatch: Redispatch, on_finished: Finished) -> None:
    """Retry or fail items whose worker stopped heartbeating; expire old results."""
    t = now()
    for job in ctx.store.active():
        for item in job.items:
            if item.status == "running" and (item.lease_until or 0) < t:
                _requeue(ctx, job.id, item.index, redispatch, on_finished)
            elif item.status == "queued" and item.undispatched:
                _dispatch_late(ctx, job.id, item.index, redispatch)
    for job in ctx.store.finished_before(t):
        expire(ctx, job)


def _requeue(
    ctx: Context, job_id: str, index: int, redispatch: Redispatch, on_finished: Finished
) -> None:
    state = {"action": ""}

    def fn(job: JobRecord) -> None:
        state["action"] = ""
        item = job.items[index]
        if item.status != "running" or (item.lease_until or 0) >= now():
            return
        item.worker, item.lease_until = None, None
        if item.attempts >= ctx.settings.max_attempts:
            item.status = "failed"
            item.error = JobError(
                code="worker_lost",
                message=f"the worker stopped {item.attempts} time(s) while processing this photo",
            )
            state["action"] = "finished" if job.settle(ctx.settings.result_ttl_seconds) else ""
        else:
            item.status = "queued"
            state["action"] = "requeue"

    job = ctx.store.update(job_id, fn)
    if job is None:
        return
    if state["action"] == "requeue":
        log.warning("job %s photo %s: worker lost, queued again", job_id, index)
        redispatch(job_id, index)
    elif state["action"] == "finished":
        _cleanup_originals(ctx, job)
        on_finished(job)


def _dispatch_late(ctx: Context, job_id: str, index: int, redispatch: Redispatch) -> None:
    """Enqueue a photo whose first enqueue failed (broker down at submit time)."""
    redispatch(job_id, index)

    def fn(job: JobRecord) -> None:
        job.items[index].undispatched = False

    ctx.store.update(job_id, fn)


def expire(ctx: Context, job: JobRecord) -> None:
    """Delete a finished job's blobs once its results expired; drop the record a TTL later."""
    if job.expires_at is None:
        return
    if not job.result_expired:
        ctx.storage.delete_prefix(f"jobs/{job.id}")

        def fn(rec: JobRecord) -> None:
            rec.result_expired = True
            rec.purge_at = (rec.expires_at or now()) + ctx.settings.result_ttl_seconds
            for item in rec.items:
                item.result_key = None

        ctx.store.update(job.id, fn)
    elif (job.purge_at or 0) < now():
        ctx.store.delete(job.id)


def run_verify(ctx: Context, original: str, protected: str, models: list[str] | None) -> Any:
    """The verification table of two stored photos; the blobs are deleted afterwards.

    A photo the verifier refuses comes back as ``{"error": {"code", "message"}}``.
    """
    from facecloak.images import ImageError

    try:
        return _verify(ctx.storage.get(original), ctx.storage.get(protected), models)
    except ImageError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}
    finally:
        ctx.storage.delete(original)
        ctx.storage.delete(protected)
