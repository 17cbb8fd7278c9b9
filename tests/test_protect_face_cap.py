"""The per-photo face cap (``max_faces_per_photo``): a photo with more faces is refused with
``too_many_faces`` before any attack step, and the other photos of its batch go on."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from facecloak.contract.options import ProtectOptions
from facecloak.images import decode_image
from facecloak.settings import Settings
from models.registry import ModelStore
from tests.helpers import dev_photo, jpeg_bytes, runtime_for
from tests.service_fixtures import A, submit, wait_job
from tests.service_fixtures import settings as gateway_settings
from workers.jobs.protect import protect_photo
from workers.jobs.runtime import Runtime

FORM = {  # a short attack that still reaches its margin (unconverged faces fail the photo)
    "strength": "high",
    "verify": "false",
    "eot_makeup": "false",
    "eot_jpeg": "false",
    "eot_rescale": "false",
}
QUICK = ProtectOptions.model_validate(FORM)
FACE = "img25.jpg"  # 400x400, one face


@pytest.fixture()
def runtime(settings: Settings, model_store: ModelStore) -> Runtime:
    dev_photo(FACE)  # skips without the shared photos
    return runtime_for(settings, model_store)


def capped(runtime: Runtime, cap: int) -> Runtime:
    """``runtime`` with ``max_faces_per_photo=cap``, sharing its loaded models."""
    rt = copy.copy(runtime)
    rt.settings = runtime.settings.model_copy(update={"max_faces_per_photo": cap})
    return rt


def crowd(n: int) -> bytes:
    """``n`` copies of a one-face photo side by side (built in memory), as a JPEG."""
    rgb = decode_image(dev_photo(FACE).read_bytes()).rgb
    return jpeg_bytes(np.concatenate([rgb] * n, axis=1))


def test_the_default_cap() -> None:
    assert Settings.model_fields["max_faces_per_photo"].default == 20


def test_a_photo_over_the_cap_is_refused_before_any_attack_step(runtime: Runtime) -> None:
    steps: list[int] = []
    rt = capped(runtime, 2)
    out = protect_photo(crowd(3), "crowd.jpg", QUICK, rt, lambda d, t: steps.append(d))
    assert out.status == "failed" and out.output is None and out.faces == 0
    assert out.error is not None and out.error.code == "too_many_faces"
    assert out.report["error"]["code"] == "too_many_faces" and out.report["status"] == "failed"
    assert "3 faces" in out.error.message and "limit of 2" in out.error.message
    assert steps == []


@pytest.mark.parametrize("cap", [2, 0], ids=["at-the-cap", "no-cap"])
def test_a_photo_within_the_cap_is_protected(runtime: Runtime, cap: int) -> None:
    out = protect_photo(crowd(2), "pair.jpg", QUICK, capped(runtime, cap))
    assert out.status == "protected" and out.faces == 2 and out.output is not None


def test_the_rest_of_the_batch_goes_on(runtime: Runtime, tmp_path: Path) -> None:
    from service.app import create_app
    from workers.handlers import build_handlers

    app = create_app(
        gateway_settings(tmp_path, max_faces_per_photo=1),
        handlers=build_handlers(capped(runtime, 1)),
        background=False,
    )
    single = dev_photo(FACE).read_bytes()
    with TestClient(app) as c:
        r = submit(c, [("crowd.jpg", crowd(2)), ("single.jpg", single)], data=FORM)
        assert r.status_code == 202, r.text
        done = wait_job(c, r.json()["id"], A, timeout=120)
        many, one = done["items"]
        assert many["status"] == "failed" and many["error"]["code"] == "too_many_faces"
        assert one["status"] == "protected" and one["faces"] == 1
        assert done["status"] == "succeeded"
        got = c.get(f"/v1/jobs/{done['id']}/result?item=1", headers=A)
        assert got.status_code == 200 and got.content[:3] == b"\xff\xd8\xff"
        refused = c.get(f"/v1/jobs/{done['id']}/result?item=0", headers=A)
        assert refused.status_code == 409 and refused.json()["error"]["details"]["error"] == (
            "too_many_faces"
        )
