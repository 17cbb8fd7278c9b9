"""Job routes: submit a protect job, list, look up, download results, cancel or delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from facecloak.contract.kinds import PROTECT
from facecloak.contract.options import ProtectOptions
from service.deps import ERRORS, St, State, Tenant
from service.errors import ApiError
from service.forms import check_models
from service.schemas import ErrorResponse, Job, JobList, job_view
from service.submission import FilePart, SubmitForm, Submitter, job_response, submit_route
from service.uploads import collect

router = APIRouter()


def _check_models(options: ProtectOptions, st: State) -> None:
    known = st.known_models() if st.known_models else None
    check_models([*options.surrogates, *options.eval_models], known)


def _too_many_photos(limit: int) -> ApiError:
    return ApiError(413, "too_many_photos", f"more than {limit} photos in one job")


FORM = SubmitForm(
    ProtectOptions,
    (FilePart("files", "One or more photos, or one zip of photos.", many=True),),
    options_doc="Protect options as a JSON object (fields below).",
    check=_check_models,
    too_many=_too_many_photos,
)


@submit_route(router, "/v1/protect", FORM.body(), "Submit photos (or one zip) to protect")
async def protect(by: Submitter) -> JSONResponse:
    """Accept photos and answer 202 with the job; poll ``Location`` or wait for the webhook.

    Send ``Idempotency-Key`` to make retries safe: the same key with the same body returns
    the same job, with a different body 422.
    """
    sub = await FORM.read(by)
    photos = await run_in_threadpool(collect, sub.files["files"], by.st.settings)
    return await sub.submit(PROTECT.name, photos)


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
