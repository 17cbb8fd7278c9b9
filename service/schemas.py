"""The public JSON shapes of the API: the job view (shared with webhooks), errors, health."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from facecloak.contract.views import Item, Job, Progress, job_view

__all__ = [
    "ErrorDetail",
    "ErrorResponse",
    "Health",
    "Item",
    "Job",
    "JobList",
    "Progress",
    "job_view",
]


class ErrorDetail(BaseModel):
    """A machine-readable ``code``, a human ``message`` and optional details."""

    code: str = Field(examples=["file_too_large"])
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer of the API has this shape."""

    error: ErrorDetail


class JobList(BaseModel):
    """A page of the caller's jobs, newest first; pass ``next_before`` as ``before``."""

    jobs: list[Job]
    next_before: float | None = None


class Health(BaseModel):
    """Liveness or readiness, with a line per dependency."""

    status: str
    mode: str | None = None
    checks: dict[str, str] = Field(default_factory=dict)
