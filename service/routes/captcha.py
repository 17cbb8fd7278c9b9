"""``POST /v1/captchas`` (a robust CAPTCHA from the pool) and ``POST /v1/captchas/{id}/verify``.

A CAPTCHA comes from the pool of its configuration (filled ahead of demand by workers);
with the pool empty the request waits up to ``captcha_wait_seconds`` and then answers 503
with ``Retry-After``: a CAPTCHA without its perturbation is never served. Answers are
compared after stripping whitespace and upper-casing; each CAPTCHA verifies once.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from facecloak.contract.captcha import MAX_ANSWER_CHARS, CaptchaConfig
from facecloak.contract.captcha_pool import CaptchaPool
from service.deps import ERRORS, St, State, Tenant
from service.errors import ApiError

router = APIRouter()

CAPTCHA_ERRORS: dict[int | str, Any] = {
    **ERRORS,
    429: ERRORS[422] | {"description": "Rate limited (see Retry-After)"},
    503: ERRORS[422] | {"description": "Pool empty (see Retry-After)"},
}
POLL_SECONDS = 0.05


class CaptchaRequest(CaptchaConfig):
    """The configuration asked for (all optional)."""


class CaptchaIssued(BaseModel):
    """A CAPTCHA to show: answer it with ``POST /v1/captchas/{id}/verify``."""

    id: str
    image_png_base64: str = Field(description="The CAPTCHA as a base64 PNG.")
    expires_at: float = Field(description="Unix time after which it no longer verifies.")
    expires_in: float = Field(description="Seconds it stays valid.")
    length: int


class CaptchaAnswer(BaseModel):
    """The answer typed by the user; compared stripped and upper-cased."""

    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS)


class CaptchaVerdict(BaseModel):
    """Whether the answer was right; the CAPTCHA is used up either way."""

    result: Literal["pass", "fail"]


def _pool(st: State) -> CaptchaPool:
    if st.captchas is None:
        raise ApiError(404, "captchas_disabled", "this gateway serves no CAPTCHAs")
    return st.captchas


@router.post(
    "/v1/captchas", status_code=201, response_model=CaptchaIssued, responses=CAPTCHA_ERRORS,
    tags=["captchas"], summary="Take a robust CAPTCHA from the pool",
)  # fmt: skip
async def create_captcha(
    st: St, tenant: Tenant, body: CaptchaRequest | None = None
) -> CaptchaIssued:
    """An id, the PNG (base64) and its expiry; 503 with ``Retry-After`` if the pool stays empty."""
    st.limiter.check(tenant)
    pool, config = _pool(st), body or CaptchaRequest()
    settings = st.settings
    if not await run_in_threadpool(pool.want, config.key, config.model_dump_json()):
        raise ApiError(422, "captcha_config_limit", "too many CAPTCHA configurations in use")
    deadline = time.monotonic() + settings.captcha_wait_seconds
    while True:
        got = await run_in_threadpool(pool.issue, config.key, tenant, settings.captcha_ttl_seconds)
        if got is not None:
            break
        if time.monotonic() >= deadline:
            raise ApiError(503, "captcha_pool_empty", "no CAPTCHA is ready; try again shortly",
                           headers={"Retry-After": "1"})  # fmt: skip
        await asyncio.sleep(POLL_SECONDS)
    record, png = got
    return CaptchaIssued(
        id=record.id, image_png_base64=base64.b64encode(png).decode(),
        expires_at=record.expires_at, expires_in=settings.captcha_ttl_seconds,
        length=config.length,
    )  # fmt: skip


@router.post(
    "/v1/captchas/{captcha_id}/verify", response_model=CaptchaVerdict, responses=CAPTCHA_ERRORS,
    tags=["captchas"], summary="Check the answer (once)",
)  # fmt: skip
async def verify_captcha(
    captcha_id: str, body: CaptchaAnswer, st: St, tenant: Tenant
) -> CaptchaVerdict:
    """``pass`` or ``fail``; 404 for an unknown, expired or already verified id."""
    st.captcha_attempts.check(tenant)
    pool = _pool(st)
    verdict = await run_in_threadpool(pool.verify, captcha_id, body.answer, tenant)
    if verdict == "unknown":
        raise ApiError(404, "captcha_not_found",
                       "no such CAPTCHA: unknown, expired or already verified")  # fmt: skip
    return CaptchaVerdict(result=verdict)
