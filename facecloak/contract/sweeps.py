"""The gateway's periodic sweeps over the job store: recover items whose worker stopped,
re-dispatch items queued too long, expire old results, delete orphaned uploads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from facecloak.contract.context import Context
from facecloak.contract.options import JobError
from facecloak.contract.records import ItemRecord, JobRecord, now

log = logging.getLogger(__name__)

Finished = Callable[[JobRecord], None]
Redispatch = Callable[[str, int, str], None]
"""``redispatch(job_id, index, kind)``: schedule an item again."""


@dataclass
class Resends:
    """When each queued item was last dispatched again, and how often (kept between sweeps).

    The wait before the next re-dispatch doubles each time, so under a long backlog (items
    queued for hours behind others, their messages not lost) the queue holds a few
    duplicates per item, not one more every period.
    """

    last: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)

    def due(self, key: tuple[str, int], since: float, t: float, period: float) -> bool:
        """Whether the item queued since ``since`` should be sent again at time ``t``."""
        at, count = self.last.get(key, (since, 0))
        return t - at > period * 2**count

    def record(self, key: tuple[str, int], t: float) -> None:
        """The item was sent again at ``t``."""
        self.last[key] = (t, self.last.get(key, (t, 0))[1] + 1)

    def keep_only(self, job_ids: set[str]) -> None:
        """Forget items of jobs that are no longer active."""
        for key in [k for k in self.last if k[0] not in job_ids]:
            del self.last[key]


def reap(
    ctx: Context,
    redispatch: Redispatch,
    on_finished: Finished,
    sent: Resends | None = None,
) -> None:
    """Retry or fail items whose worker stopped heartbeating; expire old results.

    A photo still queued ``queued_redispatch_seconds`` after its job was created is
    dispatched again (then after twice that, four times ..., counted in ``sent``, which the
    caller keeps between sweeps): a lost message cannot leave it queued forever, and a
    duplicate is a no-op.
    """
    t, lease_t = now(), ctx.store.now()  # leases are on the store's clock
    sent = Resends() if sent is None else sent
    active = ctx.store.active()
    for job in active:
        for item in job.items:
            if item.status == "running" and (item.lease_until or 0) < lease_t:
                _requeue(ctx, job.id, item.index, redispatch, on_finished)
            elif item.status == "queued" and item.undispatched:
                _dispatch_late(ctx, job, item.index, redispatch)
            elif item.status == "queued":
                key = (job.id, item.index)
                if sent.due(key, job.created_at, t, ctx.settings.queued_redispatch_seconds):
                    log.warning("job %s photo %s: queued too long, sent again", job.id, item.index)
                    redispatch(job.id, item.index, job.kind)
                    sent.record(key, t)
    sent.keep_only({job.id for job in active})
    for job in ctx.store.finished_before(t):
        expire(ctx, job)


def result_key(job_id: str, index: int, attempt: int) -> str:
    """Where run ``attempt`` of item ``index`` saves its result (each claim has its own)."""
    return f"jobs/{job_id}/out/{index}-{attempt}"


def drop_results(ctx: Context, job_id: str, item: ItemRecord, before: int | None = None) -> None:
    """Delete the result files of the item's runs (those before run ``before``; default all)
    except its committed one: a run killed between saving and committing leaves one behind."""
    last = item.attempts if before is None else before - 1
    for attempt in range(1, last + 1):
        key = result_key(job_id, item.index, attempt)
        if key != item.result_key:
            ctx.storage.delete(key)


def sweep_orphans(ctx: Context) -> list[str]:
    """Delete uploads no job will process, older than ``orphan_max_age_seconds``.

    That is every ``verify/<id>`` folder (a verification deletes its photos when it ends)
    and every ``jobs/<id>`` folder without a job record (a submit that failed part-way, a
    record purged while its files stayed). Returns the deleted prefixes.
    """
    before = now() - ctx.settings.orphan_max_age_seconds
    gone = list(ctx.storage.stale("verify", before))
    for prefix in ctx.storage.stale("jobs", before):
        if ctx.store.get(prefix.rsplit("/", 1)[-1]) is None:
            gone.append(prefix)
    for prefix in gone:
        ctx.storage.delete_prefix(prefix)
        log.warning("deleted orphaned uploads %s", prefix)
    return gone


def _requeue(
    ctx: Context, job_id: str, index: int, redispatch: Redispatch, on_finished: Finished
) -> None:
    state = {"action": ""}
    t = ctx.store.now()

    def fn(job: JobRecord) -> None:
        state["action"] = ""
        item = job.items[index]
        if item.status != "running" or (item.lease_until or 0) >= t:
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
        redispatch(job_id, index, job.kind)
    elif state["action"] == "finished":
        ctx.storage.delete_prefix(f"jobs/{job.id}/in")
        drop_results(ctx, job.id, job.items[index])
        on_finished(job)


def _dispatch_late(ctx: Context, job: JobRecord, index: int, redispatch: Redispatch) -> None:
    """Enqueue an item whose first enqueue failed (broker down at submit time)."""
    job_id = job.id
    redispatch(job_id, index, job.kind)

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
