"""Job kinds: the registry, a new kind running with no new plumbing, handler injection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from facecloak.contract.context import Context
from facecloak.contract.kinds import (
    PROTECT,
    JobKind,
    ProgressFn,
    UnknownKind,
    get_kind,
    kinds,
    register_kind,
)
from facecloak.contract.options import ItemOutcome, ProtectOptions
from facecloak.contract.queues import CPU_QUEUE, GPU_QUEUE, RUN_ITEM_TASK
from facecloak.contract.records import ItemRecord, JobRecord
from service.app import create_app
from service.uploads import Photo
from tests.service_fixtures import A, fake_handlers, png, settings, wait_job


class EchoOptions(BaseModel):
    """Options of the test-only ``echo`` kind."""

    times: int = 1


ECHO = register_kind(
    JobKind(name="echo", options=EchoOptions, queue=CPU_QUEUE, description="Repeat the bytes.")
)


def echo(data: bytes, filename: str, options: BaseModel, progress: ProgressFn) -> ItemOutcome:
    """The ``echo`` handler: the item's bytes ``times`` times."""
    assert isinstance(options, EchoOptions)
    progress(1, 1)
    return ItemOutcome(filename=filename, status="protected", output=data * options.times)


def test_registry() -> None:
    assert get_kind("protect") is PROTECT
    assert PROTECT.options is ProtectOptions and PROTECT.queue == GPU_QUEUE
    assert {k.name for k in kinds()} >= {"protect", "echo"}
    assert register_kind(ECHO) is ECHO  # registering the same kind again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_kind(JobKind("echo", EchoOptions, GPU_QUEUE, "another echo"))
    with pytest.raises(UnknownKind, match="known kinds"):
        get_kind("captcha-that-nobody-registered")


def test_records_only_take_registered_kinds() -> None:
    assert JobRecord(id="j", tenant="t", kind="echo").kind == "echo"
    with pytest.raises(ValidationError):
        JobRecord(id="j", tenant="t", kind="nope")


def _submit(app: Any, kind: str, options: BaseModel) -> str:
    photos = [Photo("a.png", png(), "image/png")]
    job, created = app.state.fc.jobs.submit("tenant-a", kind, photos, options, None, None)
    assert created
    job_id: str = job.id
    return job_id


def test_a_new_kind_runs_with_its_handler_and_nothing_else(tmp_path: Path) -> None:
    handlers = {**fake_handlers(), "echo": echo}
    app = create_app(settings(tmp_path), handlers=handlers, background=False)
    with TestClient(app) as c:
        job_id = _submit(app, "echo", EchoOptions(times=2))
        done = wait_job(c, job_id, A)
        assert done["kind"] == "echo" and done["status"] == "succeeded", done
        assert done["options"] == {"times": 2}
        assert c.get(f"/v1/jobs/{job_id}/result", headers=A).content == png() * 2


def test_a_kind_without_a_handler_fails_its_items(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path), handlers=fake_handlers(), background=False)
    with TestClient(app) as c:
        done = wait_job(c, _submit(app, "echo", EchoOptions()), A)
        assert done["status"] == "failed"
        assert done["items"][0]["error"]["code"] == "unsupported_kind"


def test_stored_options_are_validated_by_the_kind(tmp_path: Path) -> None:
    ctx = Context.from_settings(settings(tmp_path))
    ctx.storage.put("jobs/bad/in/0", png())
    item = ItemRecord(index=0, filename="a.png", original_key="jobs/bad/in/0")
    record = JobRecord(id="bad", tenant="tenant-a", kind="echo", options={"times": "x"})
    record.items = [item]
    ctx.store.create(record)
    app = create_app(settings(tmp_path), handlers={"echo": echo}, ctx=ctx, background=False)
    with TestClient(app) as c:
        done = wait_job(c, "bad", A)
        assert done["items"][0]["error"]["code"] == "invalid_options"


def test_celery_dispatch_sends_run_item_to_the_kinds_queue(tmp_path: Path) -> None:
    from service.dispatch import CeleryDispatcher

    dispatcher = CeleryDispatcher(Context.from_settings(settings(tmp_path)))  # no connection yet
    sent: list[tuple[str, Any, str | None]] = []
    dispatcher.app.send_task = lambda name, args=None, queue=None, **_: sent.append(
        (name, args, queue)
    )
    dispatcher.enqueue("j1", 0, "protect")
    dispatcher.enqueue("j2", 3, "echo")
    assert sent == [(RUN_ITEM_TASK, ["j1", 0], GPU_QUEUE), (RUN_ITEM_TASK, ["j2", 3], CPU_QUEUE)]


def test_readiness_runs_the_injected_probes(tmp_path: Path) -> None:
    def models_missing() -> None:
        raise RuntimeError("model w600k_mbf is not available")

    app = create_app(settings(tmp_path), readiness={"models": models_missing}, background=False)
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        checks = r.json()["checks"]
        assert checks["jobstore"] == checks["storage"] == checks["executor"] == "ok"
        assert checks["models"] == "unavailable"  # the reason is logged, not published
        assert "w600k_mbf" not in r.text
