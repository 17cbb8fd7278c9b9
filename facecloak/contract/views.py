"""The public view of a job: the JSON that ``GET /v1/jobs/{id}`` and webhooks carry."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from facecloak.contract.options import JobError
from facecloak.contract.records import (
    ItemRecord,
    ItemStatus,
    JobRecord,
    JobStatus,
    progress_unit,
)


class Progress(BaseModel):
    """Faces and photos done so far (faces count as each photo finishes).

    Live progress within a photo is per item: ``items[].progress`` (``done``/``total`` in the
    kind's unit; attack steps for ``protect``).
    """

    faces_done: int
    faces_total: int
    photos_done: int
    photos_total: int


class ItemProgress(BaseModel):
    """How far one photo is: ``done`` of ``total`` units (``total`` 0: not known yet)."""

    done: int = Field(ge=0)
    total: int = Field(ge=0)
    unit: str = Field(description="What is counted, from the job kind (protect: attack steps).")


class Item(BaseModel):
    """One photo of a job."""

    index: int
    filename: str
    status: ItemStatus
    progress: ItemProgress
    faces: int
    attempts: int
    seconds: float | None = None
    error: JobError | None = None
    report: dict[str, Any] = Field(default_factory=dict)
    result_url: str | None = None


class Job(BaseModel):
    """A job (``kind`` says which: ``protect``, ...)."""

    id: str
    kind: str
    status: JobStatus
    progress: Progress
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    result_expired: bool = False
    result_url: str | None = None
    callback_url: str | None = None
    options: dict[str, Any]
    error: JobError | None = None
    items: list[Item]


def _ts(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc)


def _item_progress(item: ItemRecord, unit: str) -> ItemProgress:
    total = item.progress_total or 0
    done = total if item.status in ("protected", "no_face") else min(item.progress_done, total)
    return ItemProgress(done=done, total=total, unit=unit)


def _item_view(job_id: str, item: ItemRecord, unit: str) -> Item:
    return Item(
        index=item.index,
        filename=item.filename,
        status=item.status,
        progress=_item_progress(item, unit),
        faces=item.faces,
        attempts=item.attempts,
        seconds=item.seconds,
        error=item.error,
        report=item.report,
        result_url=f"/v1/jobs/{job_id}/result?item={item.index}" if item.result_key else None,
    )


def job_view(job: JobRecord) -> Job:
    """The public view of a record (no storage keys, no owner tokens)."""
    has_result = job.status == "succeeded" and any(i.result_key for i in job.items)
    unit = progress_unit(job.kind)
    return Job(
        id=job.id,
        kind=job.kind,
        status=job.status,
        progress=Progress(
            faces_done=sum(i.faces_done for i in job.items),
            faces_total=sum(i.faces_total or i.faces for i in job.items),
            photos_done=sum(1 for i in job.items if i.done),
            photos_total=len(job.items),
        ),
        created_at=_ts(job.created_at) or datetime.now(tz=timezone.utc),
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        expires_at=_ts(job.expires_at),
        result_expired=job.result_expired,
        result_url=f"/v1/jobs/{job.id}/result" if has_result else None,
        callback_url=job.callback_url,
        options=job.options,
        error=job.error,
        items=[_item_view(job.id, i, unit) for i in job.items],
    )
