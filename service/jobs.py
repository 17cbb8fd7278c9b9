"""Job operations behind the routes: submit, look up, cancel or delete, fetch results."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import BaseModel

from facecloak.contract.context import Context
from facecloak.contract.records import ItemRecord, JobRecord, now
from facecloak.contract.runner import original_key
from facecloak.contract.storage import BlobNotFound
from facecloak.contract.store import QuotaExceeded
from facecloak.contract.views import job_view
from facecloak.contract.webhooks import tenant_secrets
from service.dispatch import Dispatcher
from service.errors import ApiError
from service.uploads import Photo
from service.zipstream import stream_zip

log = logging.getLogger(__name__)


@dataclass
class Download:
    """A result to send: bytes (or chunks, for a batch zip), media type and a file name."""

    data: bytes | Iterator[bytes]
    media_type: str
    filename: str


def quota_error(exc: QuotaExceeded) -> ApiError:
    """429 ``quota_exceeded``: the tenant has too many photos queued or running."""
    message = (
        f"you have {exc.open_items} photo(s) queued or running and this request adds "
        f"{exc.requested}; the limit is {exc.limit} at once"
    )
    if exc.requested > exc.limit:
        message += "; split the request"
    else:
        message += "; retry once some have finished"
    details = {"open_items": exc.open_items, "requested": exc.requested, "limit": exc.limit}
    return ApiError(429, "quota_exceeded", message, details, {"Retry-After": "30"})


def request_hash(
    kind: str, photos: list[Photo], options: BaseModel, callback_url: str | None
) -> str:
    """What makes two submits "the same body" for idempotency."""
    digest = hashlib.sha256()
    head = {"kind": kind, "options": options.model_dump(mode="json"), "callback_url": callback_url}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for photo in photos:
        digest.update(photo.filename.encode() + b"\0")
        digest.update(hashlib.sha256(photo.data).digest())
        digest.update((photo.error.code if photo.error else "").encode() + b"\0")
    return digest.hexdigest()


class JobService:
    """Submits to the dispatcher and answers for one tenant at a time."""

    def __init__(self, ctx: Context, dispatcher: Dispatcher) -> None:
        self.ctx = ctx
        self.dispatcher = dispatcher

    def submit(
        self,
        tenant: str,
        kind: str,
        photos: list[Photo],
        options: BaseModel,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> tuple[JobRecord, bool]:
        """Store the originals, create a ``kind`` job, enqueue its items; (job, created).

        A ``callback_url`` needs a webhook secret for ``tenant`` (422 ``webhook_not_configured``):
        webhooks are never sent unsigned.
        """
        if callback_url and not tenant_secrets(self.ctx.settings, tenant):
            raise ApiError(
                422,
                "webhook_not_configured",
                "callbacks are not available: no webhook secret is configured for your tenant",
            )
        steps = getattr(options, "steps", None)
        if isinstance(steps, int) and steps > self.ctx.settings.max_steps:
            raise ApiError(
                422,
                "steps_over_limit",
                f"steps={steps} is over this service's limit of {self.ctx.settings.max_steps}",
                {"field": "steps", "limit": self.ctx.settings.max_steps},
            )
        digest = request_hash(kind, photos, options, callback_url)
        job_id = "job_" + uuid.uuid4().hex
        limit = self.ctx.settings.max_open_items_per_tenant
        if limit and not idempotency_key:  # cheap early refusal; create() decides atomically
            requested = sum(1 for photo in photos if photo.error is None)
            have = self.ctx.store.open_items(tenant)
            if have + requested > limit:
                raise quota_error(QuotaExceeded(have, requested, limit))
        items = self._store_originals(job_id, photos)
        job = JobRecord(
            id=job_id,
            tenant=tenant,
            kind=kind,
            options=options.model_dump(mode="json"),
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            request_hash=digest,
            items=items,
        )
        try:
            stored, created = self.ctx.store.create(job, max_open_items=limit)
        except Exception as exc:
            self.ctx.storage.delete_prefix(f"jobs/{job_id}")  # nothing was accepted
            if isinstance(exc, QuotaExceeded):
                raise quota_error(exc) from None
            raise
        if not created:  # a concurrent submit with the same key won the race
            self.ctx.storage.delete_prefix(f"jobs/{job_id}")
            self._same_body(stored, digest)
            return stored, False
        pending = [item.index for item in items if item.status == "queued"]
        for n, index in enumerate(pending):
            try:
                self.dispatcher.enqueue(job_id, index, kind)
            except Exception:  # broker down: accepted anyway, the sweep dispatches later
                log.warning("job %s: enqueue failed; will retry", job_id, exc_info=True)
                self._mark_undispatched(job_id, pending[n:])
                break
        return stored, True

    def _store_originals(self, job_id: str, photos: list[Photo]) -> list[ItemRecord]:
        """Put each accepted photo in storage; on any failure none of them stays behind."""
        items = []
        try:
            for index, photo in enumerate(photos):
                item = ItemRecord(index=index, filename=photo.filename, media_type=photo.media_type)
                if photo.error is not None:
                    item.status, item.error = "failed", photo.error
                else:
                    item.original_key = original_key(job_id, index)
                    self.ctx.storage.put(item.original_key, photo.data)
                items.append(item)
        except BaseException:
            self.ctx.storage.delete_prefix(f"jobs/{job_id}")
            raise
        return items

    def _mark_undispatched(self, job_id: str, indexes: list[int]) -> None:
        def fn(rec: JobRecord) -> None:
            for index in indexes:
                rec.items[index].undispatched = True

        self.ctx.store.update(job_id, fn)

    @staticmethod
    def _same_body(job: JobRecord, digest: str) -> None:
        if job.request_hash != digest:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
                {"job_id": job.id},
            )

    def get(self, tenant: str, job_id: str) -> JobRecord:
        """The tenant's job; 404 for unknown ids and other tenants' jobs alike."""
        job = self.ctx.store.get(job_id) if len(job_id) < 100 else None
        if job is None or job.tenant != tenant:
            raise ApiError(404, "job_not_found", f"no job {job_id!r}")
        return job

    def cancel_or_delete(self, tenant: str, job_id: str) -> JobRecord | None:
        """Cancel an unfinished job (returned), or delete a finished one (None)."""
        job = self.get(tenant, job_id)
        if not job.done:

            def fn(rec: JobRecord) -> None:
                if rec.done:
                    return
                rec.status = "canceled"
                rec.finished_at = now()
                rec.expires_at = rec.finished_at + self.ctx.settings.result_ttl_seconds
                for item in rec.items:
                    if item.status == "queued":
                        item.status = "canceled"

            updated = self.ctx.store.update(job_id, fn)
            if updated is not None and updated.status == "canceled":
                self.ctx.storage.delete_prefix(f"jobs/{job_id}/in")
                self.dispatcher.finished(updated)
                return updated
        self.ctx.storage.delete_prefix(f"jobs/{job_id}")
        self.ctx.store.delete(job_id)
        return None

    def result(self, tenant: str, job_id: str, item: int | None) -> Download:
        """The protected photo (one-photo job or ``item``), or a zip of a batch."""
        job = self.get(tenant, job_id)
        if job.result_expired:
            raise ApiError(
                410,
                "result_expired",
                "the results of this job expired and were deleted",
                {"expired_at": job.expires_at},
            )
        if item is not None and not 0 <= item < len(job.items):
            raise ApiError(404, "item_not_found", f"job has no item {item}")
        if item is None and len(job.items) == 1:
            item = 0
        if item is not None:
            rec = job.items[item]
            if not rec.result_key:
                status = rec.status if rec.done else "not finished"
                raise ApiError(
                    409,
                    "no_result",
                    f"photo {rec.filename!r} has no protected result ({status})",
                    {"status": rec.status, "error": rec.error and rec.error.code},
                )
            data = self._blob(rec.result_key)
            return Download(data, rec.media_type or "application/octet-stream", rec.filename)
        if not job.done:
            raise ApiError(
                409, "not_finished", "the job has not finished yet", {"status": job.status}
            )
        return Download(self._zip(job), "application/zip", f"{job.id}.zip")

    def _blob(self, key: str) -> bytes:
        try:
            return self.ctx.storage.get(key)
        except BlobNotFound as exc:
            raise ApiError(410, "result_expired", "the result is no longer stored") from exc

    def _zip(self, job: JobRecord) -> Iterator[bytes]:
        """The batch zip, streamed: each result is read from storage as it is written."""
        entries: list[tuple[str, Callable[[], bytes]]] = [
            (rec.filename, partial(self._blob, rec.result_key))
            for rec in job.items
            if rec.result_key
        ]
        manifest: dict[str, Any] = job_view(job).model_dump(mode="json")
        entries.append(("manifest.json", lambda: json.dumps(manifest, indent=2).encode()))
        return stream_zip(entries)
