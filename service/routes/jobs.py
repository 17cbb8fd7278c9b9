"""Job routes: submit a protect job, list, look up, download results, cancel or delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from facecloak.contract.kinds import PROTECT
from facecloak.contract.options import ProtectOptions
from facecloak.contract.records import JobRecord
from service.deps import ERRORS, SUBMIT_ERRORS, St, Tenant
from service.errors import ApiError
from service.forms import (
    IDEMPOTENCY_KEY_RE,
    callback_url,
    check_models,
    option_properties,
    parse_options,
    read_files,
    read_form,
)
from service.schemas import ErrorResponse, Job, JobList, job_view
from service.uploads import collect

RETRY_AFTER_S = 2
_PROTECT_FIELDS = ("files", "callback_url")

router = APIRouter()


PROTECT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more photos, or one zip of photos.",
                        },
                        "options": {
                            "type": "string",
                            "description": "Protect options as a JSON object (fields below).",
                        },
                        "callback_url": {"type": "string", "format": "uri"},
                        **option_properties(ProtectOptions),
                    },
                }
            }
        },
    }
}


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
    if key is not None and not IDEMPOTENCY_KEY_RE.match(key):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-200 printable ASCII characters",
        )


@router.post(
    "/v1/protect",
    status_code=202,
    response_model=Job,
    responses=SUBMIT_ERRORS,
    openapi_extra=PROTECT_BODY,
    summary="Submit photos (or one zip) to protect",
)
async def protect(
    request: Request,
    st: St,
    who: Tenant,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Makes retries safe")
    ] = None,
) -> JSONResponse:
    """Accept photos and answer 202 with the job; poll ``Location`` or wait for the webhook.

    Send ``Idempotency-Key`` to make retries safe: the same key with the same body returns
    the same job, with a different body 422.
    """
    st.limiter.check(who)
    check_idempotency_key(idempotency_key)
    form = await read_form(request, st.settings, st.settings.max_batch_photos + 1)
    try:
        options = parse_options(form, ProtectOptions, _PROTECT_FIELDS)
        known = st.known_models() if st.known_models else None
        check_models([*options.surrogates, *options.eval_models], known)
        callback = await run_in_threadpool(callback_url, form, st.settings.webhook_allowed_hosts)
        files = await read_files(form, "files", st.settings.max_upload_bytes)
    finally:
        await form.close()
    photos = await run_in_threadpool(collect, files, st.settings)
    job, created = await run_in_threadpool(
        st.jobs.submit, who, PROTECT.name, photos, options, callback, idempotency_key
    )
    return accepted(job, created)


@router.get("/v1/jobs", response_model=JobList, responses=ERRORS, summary="List your jobs")
def list_jobs(
    st: St,
    who: Tenant,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[float | None, Query(description="created_at cursor (epoch s)")] = None,
) -> JobList:
    """Your jobs, newest first."""
    jobs = st.ctx.store.for_tenant(who, limit=limit, before=before)
    cursor = jobs[-1].created_at if len(jobs) == limit else None
    return JobList(jobs=[job_view(j) for j in jobs], next_before=cursor)


@router.get("/v1/jobs/{job_id}", response_model=Job, responses=ERRORS, summary="A job")
def get_job(job_id: str, st: St, who: Tenant) -> JSONResponse:
    """Status, progress, per-photo results and errors (``Retry-After`` while unfinished)."""
    return job_response(job_view(st.jobs.get(who, job_id)), 200)


@router.get(
    "/v1/jobs/{job_id}/result",
    responses={
        **ERRORS,
        200: {
            "content": {"image/*": {}, "application/zip": {}},
            "description": "The protected photo, or a zip for a batch",
        },
        409: {"model": ErrorResponse, "description": "No result (yet)"},
        410: {"model": ErrorResponse, "description": "The result expired"},
    },
    response_class=Response,
    summary="Download the protected photo (or a zip for a batch)",
)
def get_result(
    job_id: str,
    st: St,
    who: Tenant,
    item: Annotated[int | None, Query(ge=0, le=100_000, description="One photo of a batch")] = None,
) -> Response:
    """The protected photo of a one-photo job (or ``item``); a zip with a manifest otherwise."""
    download = st.jobs.result(who, job_id, item)
    headers = {"Content-Disposition": f'attachment; filename="{download.filename}"'}
    if isinstance(download.data, bytes):
        return Response(download.data, media_type=download.media_type, headers=headers)
    return StreamingResponse(download.data, media_type=download.media_type, headers=headers)


@router.delete(
    "/v1/jobs/{job_id}",
    response_model=Job,
    responses={**ERRORS, 204: {"description": "Deleted (job and results)"}},
    summary="Cancel an unfinished job, or delete a finished one",
)
def delete_job(job_id: str, st: St, who: Tenant) -> Response:
    """Unfinished: cancel (200 with the job). Finished: delete it and its results (204)."""
    job = st.jobs.cancel_or_delete(who, job_id)
    if job is None:
        return Response(status_code=204)
    return job_response(job_view(job), 200)
