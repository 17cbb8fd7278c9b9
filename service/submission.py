"""What every job-submitting route shares: who sends, the form, the 202 with the job.

A submit route (``/v1/protect``, ``/v1/augmentations``, ``/v1/backdoor-scans``) declares
its form once, as a :class:`SubmitForm` (options model and file parts); the form gives the
documented multipart body and reads a request in the same order for every route: rate
limit, ``Idempotency-Key``, the multipart body, options, callback URL, then the files.
The route checks its own files, makes the job's items and calls :meth:`Submission.submit`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.types import DecoratedCallable
from pydantic import BaseModel
from starlette.datastructures import FormData

from facecloak.contract.records import JobRecord
from service.deps import SUBMIT_ERRORS, St, State, Tenant
from service.errors import ApiError
from service.forms import (
    FILE_SCHEMA,
    IDEMPOTENCY_KEY_RE,
    TooMany,
    callback_url,
    multipart_body,
    option_properties,
    parse_options,
    read_files,
    read_form,
    read_one_file,
    too_many_files,
)
from service.schemas import Job, job_view
from service.uploads import Photo

RETRY_AFTER_S = 2
Opts = TypeVar("Opts", bound=BaseModel)
File = tuple[str, bytes]
"""An uploaded file: (file name, bytes)."""


def job_response(job: Job, status: int, extra: dict[str, str] | None = None) -> JSONResponse:
    """The job JSON, with ``Retry-After`` while it is unfinished."""
    headers = dict(extra or {})
    if job.status in ("queued", "running"):
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse(job.model_dump(mode="json"), status_code=status, headers=headers)


def accepted(job: JobRecord, created: bool) -> JSONResponse:
    """202 with the new (or idempotently replayed) job and its ``Location``."""
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return job_response(job_view(job), 202, headers)


def check_idempotency_key(key: str | None) -> None:
    """422 ``invalid_idempotency_key`` unless absent or 1-200 printable ASCII characters."""
    if key is not None and not IDEMPOTENCY_KEY_RE.match(key):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-200 printable ASCII characters",
        )


@dataclass(frozen=True)
class Sender:
    """Who submits: the request, the app's state, the tenant and its ``Idempotency-Key``."""

    request: Request
    st: State
    who: str
    idempotency_key: str | None


async def sender(
    request: Request,
    st: St,
    who: Tenant,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Makes retries safe")
    ] = None,
) -> Sender:
    """The :class:`Sender` of a submit request (401 without a valid API key)."""
    return Sender(request, st, who, idempotency_key)


Submitter = Annotated[Sender, Depends(sender)]


def submit_route(
    router: APIRouter, path: str, body: dict[str, Any], summary: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``router.post`` for a submit route: 202 with the job, the submit errors, ``body``."""
    return router.post(
        path,
        status_code=202,
        response_model=Job,
        responses=SUBMIT_ERRORS,
        openapi_extra=body,
        summary=summary,
    )


@dataclass(frozen=True)
class FilePart:
    """A file field of a submit form: one file (``required`` or not), or ``many``.

    A ``many`` part is read whole, however many files it holds (none included): the route
    checks it (``collect``); ``required`` then only documents it.
    """

    name: str
    description: str
    required: bool = True
    many: bool = False

    def schema(self) -> dict[str, Any]:
        """The part's OpenAPI property."""
        if self.many:
            return {"type": "array", "items": dict(FILE_SCHEMA), "description": self.description}
        return {**FILE_SCHEMA, "description": self.description}

    async def read(self, form: FormData, limit: int) -> list[File]:
        """The part's files; 422 for a missing required one, a second one or an empty one."""
        if self.many:
            return await read_files(form, self.name, limit)
        one = await read_one_file(form, self.name, limit, required=self.required)
        return [] if one is None else [one]


@dataclass(frozen=True)
class Submission(Generic[Opts]):
    """A submit request, read and checked: its sender, options, callback URL and files."""

    by: Sender
    options: Opts
    callback: str | None
    files: dict[str, list[File]]

    def file(self, name: str) -> File:
        """The one file of the required part ``name``."""
        return self.files[name][0]

    def optional_file(self, name: str) -> File | None:
        """The file of the optional part ``name``, if sent."""
        sent = self.files[name]
        return sent[0] if sent else None

    async def submit(self, kind: str, items: list[Photo]) -> JSONResponse:
        """Create the ``kind`` job of ``items``; 202 with the job (or the replayed one)."""
        by = self.by
        job, created = await run_in_threadpool(
            by.st.jobs.submit, by.who, kind, items, self.options, self.callback, by.idempotency_key
        )
        return accepted(job, created)


@dataclass(frozen=True)
class SubmitForm(Generic[Opts]):
    """The multipart form of a submit route: file parts, options (as fields or JSON) and an
    optional ``callback_url``; ``check`` vets the options before anything else is read."""

    options: type[Opts]
    files: Sequence[FilePart]
    options_doc: str = "Options as JSON."
    check: Callable[[Opts, State], None] | None = None
    too_many: TooMany | None = None
    """The answer past :meth:`max_files` file parts; default 422 ``too_many_files``."""

    def body(self) -> dict[str, Any]:
        """The OpenAPI ``requestBody`` (for ``openapi_extra``)."""
        return multipart_body(
            [f.name for f in self.files if f.required],
            {
                **{f.name: f.schema() for f in self.files},
                "options": {"type": "string", "description": self.options_doc},
                "callback_url": {"type": "string", "format": "uri"},
                **option_properties(self.options),
            },
        )

    def max_files(self, st: State) -> int:
        """Files the parser takes: one per part, a batch for a ``many`` part. Past it, at any
        count, the answer is the route's own (``too_many``), never the parser's 400."""
        many = any(f.many for f in self.files)
        singles = sum(not f.many for f in self.files)
        return singles + (st.settings.max_batch_photos if many else 0)

    async def read(self, by: Sender) -> Submission[Opts]:
        """Rate limit, ``Idempotency-Key``, then the form: options, callback URL, files."""
        st = by.st
        st.limiter.check(by.who)
        check_idempotency_key(by.idempotency_key)
        too_many = self.too_many or too_many_files([f.name for f in self.files])
        form = await read_form(by.request, st.settings, self.max_files(st), too_many)
        limit = st.settings.max_upload_bytes
        try:
            fields = (*(f.name for f in self.files), "callback_url")
            options = parse_options(form, self.options, fields)
            if self.check is not None:
                self.check(options, st)
            callback = await run_in_threadpool(
                callback_url, form, st.settings.webhook_allowed_hosts
            )
            files = {f.name: await f.read(form, limit) for f in self.files}
        finally:
            await form.close()
        return Submission(by, options, callback, files)
