"""The HTTP routes: thin glue between requests and :class:`service.jobs.JobService`."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from facecloak.contract.options import ProtectOptions
from facecloak.contract.runner import Context
from facecloak.settings import Settings
from service.auth import API_KEY_HEADER, KeyRing
from service.dispatch import Dispatcher
from service.errors import ApiError
from service.jobs import JobService
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.schemas import ErrorResponse, Health, Job, JobList, job_view
from service.uploads import check_photo, collect

RETRY_AFTER_S = 2
_LIST_FIELDS = {"surrogates", "eval_models"}
_FORM_EXTRA = {"files", "options", "callback_url"}
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass
class State:
    """Everything the routes use, built once per app."""

    settings: Settings
    ctx: Context
    dispatcher: Dispatcher
    jobs: JobService
    keys: KeyRing
    limiter: RateLimiter
    metrics: Metrics


def state(request: Request) -> State:
    """The app's :class:`State`."""
    st: State = request.app.state.fc
    return st


_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def tenant(request: Request, key: Annotated[str | None, Depends(_api_key)] = None) -> str:
    """The caller's tenant from ``X-API-Key`` (401 otherwise)."""
    return state(request).keys.tenant(key)


Tenant = Annotated[str, Depends(tenant)]
St = Annotated[State, Depends(state)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "Missing or invalid API key",
        404: "No such job (or another tenant's)",
        422: "Invalid request",
        503: "A backend is unreachable",
    }.items()
}
_SUBMIT_ERRORS = {
    **_ERRORS,
    400: {"model": ErrorResponse, "description": "Malformed multipart body"},
    413: {"model": ErrorResponse, "description": "Too large (bytes, pixels, photos, zip)"},
    415: {"model": ErrorResponse, "description": "Not a multipart body, or unsupported format"},
    429: {"model": ErrorResponse, "description": "Rate limited (see Retry-After)"},
}


def _option_props() -> dict[str, Any]:
    props: dict[str, Any] = ProtectOptions.model_json_schema()["properties"]
    return {k: {kk: vv for kk, vv in v.items() if kk != "default"} for k, v in props.items()}


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
                        **_option_props(),
                    },
                }
            }
        },
    }
}
VERIFY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["original", "protected"],
                    "properties": {
                        "original": {"type": "string", "format": "binary"},
                        "protected": {"type": "string", "format": "binary"},
                        "models": {"type": "string", "description": "Comma-separated models."},
                    },
                }
            }
        },
    }
}

router = APIRouter()


async def _form(request: Request, st: State, max_files: int) -> FormData:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > st.settings.max_request_bytes:
        raise ApiError(
            413,
            "request_too_large",
            f"the request is {length} bytes; the limit is {st.settings.max_request_bytes}",
        )
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    return await request.form(max_files=max_files, max_fields=100)


async def _read(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(
            413, "file_too_large", f"{upload.filename!r} is larger than the limit of {limit} bytes"
        )
    return data


def _options(form: FormData) -> ProtectOptions:
    unknown = sorted(set(form.keys()) - set(ProtectOptions.model_fields) - _FORM_EXTRA)
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown form field(s): {', '.join(unknown)}")
    raw: dict[str, Any] = {}
    text = form.get("options")
    if text is not None:
        if not isinstance(text, str):
            raise ApiError(422, "invalid_options", "'options' must be a JSON text field")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError(422, "invalid_options", f"'options' is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ApiError(422, "invalid_options", "'options' must be a JSON object")
    for name in ProtectOptions.model_fields:
        values = form.getlist(name)
        if any(not isinstance(v, str) for v in values):
            raise ApiError(422, "invalid_options", f"option {name!r} must be a text field")
        if not values:
            continue
        if name in _LIST_FIELDS:
            raw[name] = [x.strip() for v in values for x in str(v).split(",") if x.strip()]
        else:
            raw[name] = values[-1]
    try:
        options = ProtectOptions.model_validate(raw)
    except ValidationError as exc:
        errors = [{"loc": [str(x) for x in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        raise ApiError(
            422, "invalid_options", "invalid protect options", {"errors": errors}
        ) from exc
    _check_models([*options.surrogates, *options.eval_models])
    return options


def _check_models(names: list[str]) -> None:
    from models.errors import ModelError
    from models.registry import get_spec

    for name in names:
        try:
            role = get_spec(name).role
        except ModelError as exc:
            raise ApiError(422, "unknown_model", str(exc), {"model": name}) from exc
        if role != "recognizer":
            raise ApiError(
                422, "unknown_model", f"{name!r} is not a face recognizer", {"model": name}
            )


def _callback(form: FormData, allowed_hosts: str) -> str | None:
    url = form.get("callback_url")
    if url is None or url == "":
        return None
    try:
        parsed = urlparse(url) if isinstance(url, str) else None
        host = parsed.hostname if parsed else None
    except ValueError:
        parsed = host = None
    if parsed is None or parsed.scheme not in ("http", "https") or not host or len(str(url)) > 2000:
        raise ApiError(422, "invalid_callback_url", "callback_url must be an http(s) URL")
    allowed = {h.strip().lower() for h in allowed_hosts.split(",") if h.strip()}
    if allowed and host.lower() not in allowed:
        raise ApiError(
            422,
            "callback_host_not_allowed",
            f"callback_url host {host!r} is not in the allowed list",
        )
    return str(url)


def _job_response(job: Job, status: int, extra: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(extra or {})
    if job.status in ("queued", "running"):
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse(job.model_dump(mode="json"), status_code=status, headers=headers)


@router.post(
    "/v1/protect",
    status_code=202,
    response_model=Job,
    responses=_SUBMIT_ERRORS,
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
    key = idempotency_key
    if key is not None and not _KEY_RE.match(key):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-200 printable ASCII characters",
        )
    form = await _form(request, st, st.settings.max_batch_photos + 1)
    try:
        options = _options(form)
        callback = _callback(form, st.settings.webhook_allowed_hosts)
        parts = form.getlist("files")
        if any(not isinstance(p, UploadFile) for p in parts):
            raise ApiError(422, "invalid_files", "'files' parts must be file uploads")
        files = [
            (p.filename or "", await _read(p, st.settings.max_upload_bytes))
            for p in parts
            if isinstance(p, UploadFile)
        ]
    finally:
        await form.close()
    photos = await run_in_threadpool(collect, files, st.settings)
    job, created = await run_in_threadpool(st.jobs.submit, who, photos, options, callback, key)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return _job_response(job_view(job), 202, headers)


@router.get("/v1/jobs", response_model=JobList, responses=_ERRORS, summary="List your jobs")
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


@router.get("/v1/jobs/{job_id}", response_model=Job, responses=_ERRORS, summary="A job")
def get_job(job_id: str, st: St, who: Tenant) -> JSONResponse:
    """Status, progress, per-photo results and errors (``Retry-After`` while unfinished)."""
    return _job_response(job_view(st.jobs.get(who, job_id)), 200)


@router.get(
    "/v1/jobs/{job_id}/result",
    responses={
        **_ERRORS,
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
    disposition = f'attachment; filename="{download.filename}"'
    return Response(
        download.data, media_type=download.media_type, headers={"Content-Disposition": disposition}
    )


@router.delete(
    "/v1/jobs/{job_id}",
    response_model=Job,
    responses={**_ERRORS, 204: {"description": "Deleted (job and results)"}},
    summary="Cancel an unfinished job, or delete a finished one",
)
def delete_job(job_id: str, st: St, who: Tenant) -> Response:
    """Unfinished: cancel (200 with the job). Finished: delete it and its results (204)."""
    job = st.jobs.cancel_or_delete(who, job_id)
    if job is None:
        return Response(status_code=204)
    return _job_response(job_view(job), 200)


@router.post(
    "/v1/verify",
    responses={**_SUBMIT_ERRORS, 504: {"model": ErrorResponse, "description": "Timed out"}},
    openapi_extra=VERIFY_BODY,
    summary="Verify protection: two photos in, the verification table out",
)
async def verify(request: Request, st: St, who: Tenant) -> dict[str, Any]:
    """Compare an original and a protected photo face by face and model by model."""
    st.limiter.check(who)
    form = await _form(request, st, 2)
    try:
        parts = {name: form.get(name) for name in ("original", "protected")}
        models_field = form.get("models")
        blobs = {}
        for name, part in parts.items():
            if not isinstance(part, UploadFile):
                raise ApiError(422, "missing_file", f"send the {name!r} photo as a file part")
            blobs[name] = await _read(part, st.settings.max_upload_bytes)
    finally:
        await form.close()
    models = None
    if isinstance(models_field, str) and models_field.strip():
        models = [m.strip() for m in models_field.split(",") if m.strip()]
        _check_models(models)
    keys = {}
    for name, data in blobs.items():
        photo = check_photo(name, data, st.settings)
        if photo.error is not None:
            raise ApiError(photo.status, photo.error.code, f"{name}: {photo.error.message}")
        keys[name] = f"verify/{uuid.uuid4().hex}/{name}"
        st.ctx.storage.put(keys[name], data)
    try:
        table: dict[str, Any] = await run_in_threadpool(
            st.dispatcher.verify, keys["original"], keys["protected"], models
        )
    except TimeoutError as exc:
        raise ApiError(504, "verify_timeout", "verification did not finish in time") from exc
    error = table.get("error") if isinstance(table, dict) else None
    if isinstance(error, dict) and "code" in error:
        raise ApiError(422, str(error["code"]), str(error.get("message", "")))
    return table


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz(st: St) -> Health:
    """The process is up."""
    return Health(status="ok", mode=st.dispatcher.mode)


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="Readiness: job store, storage, broker/executor, models",
)
def readyz(st: St) -> JSONResponse:
    """200 when every dependency answers, 503 with the failing ones otherwise."""
    checks: dict[str, str] = {}
    probes = {
        "jobstore": st.ctx.store.ping,
        "storage": st.ctx.storage.check,
        "broker" if st.dispatcher.mode == "distributed" else "executor": st.dispatcher.check,
    }
    if st.dispatcher.mode == "embedded":
        probes["models"] = _models_ready
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", mode=st.dispatcher.mode, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


_READY_MODELS: set[str] = set()


def _models_ready() -> None:
    from models.registry import cached_path, get_spec, is_available

    for name in ProtectOptions().surrogates:
        if name in _READY_MODELS:
            continue
        spec = get_spec(name)
        if not is_available(spec):
            raise RuntimeError(f"model {name} is not available at {cached_path(spec)}")
        _READY_MODELS.add(name)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
)
def metrics(st: St) -> Response:
    """Jobs by state, queue depth, seconds per face, HTTP requests."""
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)
