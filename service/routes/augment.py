"""``POST /v1/augmentations``: adversarial data augmentation of a labelled set (an ``augment`` job).

The uploaded ``model`` (ONNX) and ``data`` (a zip of one folder per class, or an npz)
become the job's one item, a zip bundle; status, result (a zip of the augmented set, its
manifest, the vulnerability table, ``report.json`` and, for ``amend``, ``model.onnx``),
cancel and webhooks are those of every job (``/v1/jobs/...``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from facecloak.contract.augment import AugmentOptions, make_bundle
from facecloak.contract.kinds import AUGMENT
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
_FIELDS = ("model", "data", "callback_url")



AUGMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model", "data"],
                    "properties": {
                        "model": {**FILE_SCHEMA, "description": "The classifier (ONNX)."},
                        "data": {
                            **FILE_SCHEMA,
                            "description": "Labelled images: a zip of one folder per class, "
                            "or an npz with 'x' and 'y'.",
                        },
                        "options": {"type": "string", "description": "Options as JSON."},
                        "callback_url": {"type": "string", "format": "uri"},
                        **option_properties(AugmentOptions),
                    },
                }
            }
        },
    }
}


@router.post(
    "/v1/augmentations",
    status_code=202,
    response_model=Job,
    responses=SUBMIT_ERRORS,
    openapi_extra=AUGMENT_BODY,
    summary="Augment a labelled image set with adversarial examples (or amend the model)",
)
async def augmentation(
    request: Request,
    st: St,
    who: Tenant,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Makes retries safe")
    ] = None,
) -> JSONResponse:
    """Accept a model and a data set and answer 202 with the job."""
    st.limiter.check(who)
    check_idempotency_key(idempotency_key)
    form = await read_form(request, st.settings, 3)
    limit = st.settings.max_upload_bytes
    try:
        options = parse_options(form, AugmentOptions, _FIELDS)
        callback = await run_in_threadpool(callback_url, form, st.settings.webhook_allowed_hosts)
        model = await read_one_file(form, "model", limit, required=True)
        data = await read_one_file(form, "data", limit, required=True)
    finally:
        await form.close()
    assert model is not None and data is not None
    if is_archive(model[1]):
        raise ApiError(415, "unsupported_format", "the 'model' file must be ONNX, not an archive")
    if not is_zip(data[1]):  # an npz is a zip too
        raise ApiError(415, "unsupported_format", "'data' must be a zip of class folders or an npz")
    item = Photo("augment.zip", make_bundle(model[1], data), "application/zip")
    job, created = await run_in_threadpool(
        st.jobs.submit, who, AUGMENT.name, [item], options, callback, idempotency_key
    )
    return accepted(job, created)
