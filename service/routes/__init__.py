"""The HTTP routes, one module per resource: jobs, verify, health (and metrics)."""

from __future__ import annotations

from fastapi import APIRouter

from service.routes import augment, backdoor, captcha, health, jobs, page, verify

router = APIRouter()
router.include_router(jobs.router)
router.include_router(verify.router)
router.include_router(health.router)
router.include_router(backdoor.router)
router.include_router(augment.router)
router.include_router(captcha.router)
router.include_router(page.router)
