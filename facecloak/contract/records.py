"""The job record: a small JSON document per job, shared by the gateway and the workers.

Blobs (uploads, results) never live here, only their storage keys. Every state change goes
through :meth:`facecloak.contract.store.JobStore.update`, an atomic read-modify-write.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from facecloak.contract.kinds import get_kind
from facecloak.contract.options import JobError

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
ItemStatus = Literal["queued", "running", "protected", "no_face", "failed", "canceled"]
PROGRESS_UNITS: dict[str, str] = {"protect": "steps"}
"""What a kind's ``progress(done, total)`` counts (protect: attack steps over all faces)."""
JOB_DONE: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})
ITEM_DONE: frozenset[str] = frozenset({"protected", "no_face", "failed", "canceled"})


def progress_unit(kind: str) -> str:
    """The unit of progress reported by items of ``kind`` (``units`` when not declared)."""
    return PROGRESS_UNITS.get(kind, "units")


def now() -> float:
    """Wall-clock seconds since the epoch (records store plain floats)."""
    return time.time()


class ItemRecord(BaseModel):
    """One photo of a job.

    ``progress_done``/``progress_total`` are the handler's last ``progress(done, total)``, in
    the kind's :func:`progress_unit`; ``faces_done``/``faces_total`` are the face counts
    (known once the photo is processed; older records also kept faces progress there).
    """

    index: int
    filename: str
    status: ItemStatus = "queued"
    faces: int = 0
    faces_done: int = 0
    faces_total: int | None = None
    progress_done: int = 0
    progress_total: int | None = None
    report: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None
    original_key: str | None = None
    result_key: str | None = None
    media_type: str | None = None
    attempts: int = 0
    undispatched: bool = False
    worker: str | None = None
    lease_until: float | None = None
    seconds: float | None = None

    @property
    def done(self) -> bool:
        """Whether the item reached a final state."""
        return self.status in ITEM_DONE


class WebhookState(BaseModel):
    """The delivery of a job's callback: an outbox entry from the moment the job ends.

    ``next_at`` is the earliest next attempt: after a failure the backoff, during an
    attempt the claim's lease (so no other sender takes it). The entry survives restarts
    because it is part of the record, written in the same step that ends the job.
    """

    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    next_at: float | None = None
    error: str | None = None
    delivered_at: float | None = None


class JobRecord(BaseModel):
    """A job: who asked, which kind with which options, and where each item stands."""

    id: str
    tenant: str
    kind: str = "protect"
    status: JobStatus = "queued"
    options: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    created_at: float = Field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    result_expired: bool = False
    purge_at: float | None = None
    error: JobError | None = None
    items: list[ItemRecord] = Field(default_factory=list)
    webhook: WebhookState | None = None

    @model_validator(mode="after")
    def _webhook_pending(self) -> JobRecord:
        if self.callback_url and self.webhook is None:
            self.webhook = WebhookState()
        return self

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        get_kind(kind)  # raises for a kind nobody registered
        return kind

    @property
    def done(self) -> bool:
        """Whether the job reached a final state."""
        return self.status in JOB_DONE

    @property
    def webhook_due(self) -> float | None:
        """When the webhook outbox next has work on this job (None: nothing to send)."""
        hook = self.webhook
        if not self.done or hook is None or hook.status != "pending" or self.result_expired:
            return None
        return max(self.finished_at or 0.0, hook.next_at or 0.0)

    @property
    def sweep_at(self) -> float | None:
        """When the expiry sweep next has work on this job (results, then the record)."""
        return self.purge_at if self.result_expired else self.expires_at

    def settle(self, ttl_seconds: float) -> bool:
        """Finish the job if every item is final; returns True when this call finished it."""
        if self.done or not all(item.done for item in self.items):
            return False
        ok = [i for i in self.items if i.status in ("protected", "no_face")]
        self.status = "succeeded" if ok else "failed"
        if not ok:
            first = next((i.error for i in self.items if i.error), None)
            self.error = first or JobError(code="all_failed", message="no photo was processed")
        self.finished_at = now()
        self.expires_at = self.finished_at + ttl_seconds
        return True
