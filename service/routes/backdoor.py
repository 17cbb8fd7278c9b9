"""``POST /v1/backdoor-scans``: scan an ONNX classifier for backdoors (a ``backdoor_scan`` job).

The uploaded files (``model``, optional ``reference`` and ``samples``) become the job's one
item, a zip bundle; status, result (a zip of ``report.json`` and figures), cancel and
webhooks are those of every job (``/v1/jobs/...``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from facecloak.contract.backdoor import BackdoorScanOptions, make_bundle
from facecloak.contract.kinds import BACKDOOR_SCAN
from service.deps import SUBMIT_ERRORS, St, Tenant
from service.errors import ApiError
from service.forms import (
    FILE_SCHEMA,
    callback_url,
    option_properties,
    parse_options,
    read_form,
    read_one_file,
)
from service.routes.jobs import accepted, check_idempotency_key
from service.schemas import Job
from service.uploads import Photo, is_archive, is_zip

router = APIRouter()
_FIELDS = ("model", "reference", "samples", "callback_url")



SCAN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {
                        "model": {**FILE_SCHEMA, "description": "The classifier to scan (ONNX)."},
                        "reference": {
                            **FILE_SCHEMA,
                            "description": "A clean model of the same task.",
                        },
                        "samples": {**FILE_SCHEMA, "description": "Unlabelled images: npz or zip."},
                        "options": {"type": "string", "description": "Options as JSON."},
                        "callback_url": {"type": "string", "format": "uri"},
                        **option_properties(BackdoorScanOptions),
                    },
                }
            }
        },
    }
}


def _check_files(
    model: tuple[str, bytes], reference: tuple[str, bytes] | None, samples: tuple[str, bytes] | None
) -> None:
    for name, part in (("model", model), ("reference", reference)):
        if part is not None and is_archive(part[1]):
            raise ApiError(
                415, "unsupported_format", f"the {name!r} file must be ONNX, not an archive"
            )
    if samples is not None and not is_zip(samples[1]):
        raise ApiError(415, "unsupported_format", "'samples' must be an npz or a zip of images")


@router.post(
    "/v1/backdoor-scans",
    status_code=202,
    response_model=Job,
    responses=SUBMIT_ERRORS,
    openapi_extra=SCAN_BODY,
    summary="Scan an ONNX image classifier for backdoors",
)
async def backdoor_scan(
    request: Request,
    st: St,
    who: Tenant,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Makes retries safe")
    ] = None,
) -> JSONResponse:
    """Accept a model (+ reference, samples) and answer 202 with the job."""
    st.limiter.check(who)
    check_idempotency_key(idempotency_key)
    form = await read_form(request, st.settings, 4)
    limit = st.settings.max_upload_bytes
    try:
        options = parse_options(form, BackdoorScanOptions, _FIELDS)
        callback = await run_in_threadpool(callback_url, form, st.settings.webhook_allowed_hosts)
        model = await read_one_file(form, "model", limit, required=True)
        reference = await read_one_file(form, "reference", limit, required=False)
        samples = await read_one_file(form, "samples", limit, required=False)
    finally:
        await form.close()
    assert model is not None
    _check_files(model, reference, samples)
    bundle = make_bundle(model[1], reference[1] if reference else None, samples)
    item = Photo("scan.zip", bundle, "application/zip")
    job, created = await run_in_threadpool(
        st.jobs.submit, who, BACKDOOR_SCAN.name, [item], options, callback, idempotency_key
    )
    return accepted(job, created)
