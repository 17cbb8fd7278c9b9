"""``POST /v1/verify``: an original and a protected photo in, the verification report out."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from facecloak.contract.reports import Verification
from service.deps import SUBMIT_ERRORS, St, State, Tenant
from service.errors import ApiError
from service.forms import (
    FILE_SCHEMA,
    check_models,
    multipart_body,
    read_form,
    read_upload,
    too_many_files,
)
from service.schemas import ErrorResponse
from service.uploads import check_photo
from service.verify_pool import VerifySlot

PHOTOS = ("original", "protected")

VERIFY_BODY = multipart_body(
    list(PHOTOS),
    {
        "original": dict(FILE_SCHEMA),
        "protected": dict(FILE_SCHEMA),
        "models": {"type": "string", "description": "Comma-separated models."},
    },
)

router = APIRouter()


async def _photos(form: FormData, limit: int) -> dict[str, bytes]:
    blobs = {}
    for name in PHOTOS:
        part = form.get(name)
        if not isinstance(part, UploadFile):
            raise ApiError(422, "missing_file", f"send the {name!r} photo as a file part")
        blobs[name] = await read_upload(part, limit)
    return blobs


def _models(form: FormData, st: State) -> list[str] | None:
    field = form.get("models")
    if not isinstance(field, str) or not field.strip():
        return None
    models = [m.strip() for m in field.split(",") if m.strip()]
    check_models(models, st.known_models() if st.known_models else None)
    return models


def _check(blobs: dict[str, bytes], st: State) -> None:
    """Check both photos (format, pixels, same size) before anything is stored."""
    sizes = {}
    for name, data in blobs.items():
        photo = check_photo(name, data, st.settings)
        if photo.error is not None:
            raise ApiError(photo.status, photo.error.code, f"{name}: {photo.error.message}")
        sizes[name] = photo.size
    if sizes["original"] != sizes["protected"]:
        (w1, h1), (w2, h2) = sizes["original"] or (0, 0), sizes["protected"] or (0, 0)
        raise ApiError(
            422,
            "size_mismatch",
            f"the photos differ in size ({w1}x{h1} vs {w2}x{h2}); send the protected photo "
            "at the size it was returned, not resized or cropped",
            {"original": [w1, h1], "protected": [w2, h2]},
        )


def _store(blobs: dict[str, bytes], st: State) -> tuple[str, dict[str, str]]:
    """Put the checked photos under one fresh prefix; (prefix, keys). Deleted by the caller."""
    prefix = f"verify/{uuid.uuid4().hex}"
    keys = {name: f"{prefix}/{name}" for name in blobs}
    try:
        for name, data in blobs.items():
            st.ctx.storage.put(keys[name], data)
    except BaseException:
        st.ctx.storage.delete_prefix(prefix)
        raise
    return prefix, keys


async def _run(
    slot: VerifySlot, st: State, keys: dict[str, str], models: list[str] | None
) -> dict[str, Any]:
    try:
        report: dict[str, Any] = await slot.run(
            st.dispatcher.verify, keys["original"], keys["protected"], models
        )
    except TimeoutError as exc:
        raise ApiError(
            504,
            "verify_timeout",
            "verification did not finish in time",
            headers={"Retry-After": "30"},
        ) from exc
    return report


@router.post(
    "/v1/verify",
    response_model=Verification,
    responses={
        **SUBMIT_ERRORS,
        503: {"model": ErrorResponse, "description": "Every verification slot is busy"},
        504: {"model": ErrorResponse, "description": "Timed out"},
    },
    openapi_extra=VERIFY_BODY,
    summary="Verify protection: two photos in, the verification table out",
)
async def verify(request: Request, st: St, who: Tenant) -> Verification:
    """Compare an original and a protected photo face by face and model by model."""
    st.limiter.check(who)
    async with st.verifies.slot() as slot:  # 503 verify_busy before the body is read
        return await _verify(request, st, slot)


async def _verify(request: Request, st: State, slot: VerifySlot) -> Verification:
    form = await read_form(request, st.settings, len(PHOTOS), too_many_files(PHOTOS))
    try:
        blobs = await _photos(form, st.settings.max_upload_bytes)
    finally:
        await form.close()
    models = _models(form, st)  # text fields stay readable after close
    await run_in_threadpool(_check, blobs, st)
    prefix, keys = await run_in_threadpool(_store, blobs, st)
    try:
        report = await _run(slot, st, keys, models)
    finally:  # an unprotected face photo never outlives its request
        await run_in_threadpool(st.ctx.storage.delete_prefix, prefix)
    error = report.get("error")
    if isinstance(error, dict) and "code" in error:
        raise ApiError(422, str(error["code"]), str(error.get("message", "")))
    return Verification.model_validate(report)
