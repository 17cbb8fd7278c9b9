"""No job stuck forever, in embedded mode: a hung handler fails at its deadline without
taking the only pool thread with it, and a run that makes no progress stops holding its
lease (the first two tests failed on the code before)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from facecloak.contract import liveness
from facecloak.contract.kinds import ProgressFn
from facecloak.contract.options import ItemOutcome
from facecloak.contract.records import JobRecord
from service.app import create_app
from tests.service_fixtures import A, fake_protect, png, settings, submit, wait_job


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """What hung handlers wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def _hanging(release: threading.Event) -> Any:
    """Hangs (no progress) on photos named ``hang*``, protects the others."""
    protect = fake_protect(0.0)

    def run(data: bytes, filename: str, options: BaseModel, progress: ProgressFn) -> ItemOutcome:
        if filename.startswith("hang"):
            release.wait()
        return protect(data, filename, options, progress)

    return run


def _record(app: Any, job_id: str) -> JobRecord:
    rec = app.state.fc.ctx.store.get(job_id)
    assert rec is not None
    return rec


def test_a_hung_job_frees_the_only_pool_thread_for_the_next_job(
    tmp_path: Path, release: threading.Event
) -> None:
    s = settings(tmp_path, embedded_workers=1, task_time_limit_seconds=1, lease_seconds=0.6)
    app = create_app(s, handlers={"protect": _hanging(release)}, background=False)
    with TestClient(app) as c:
        hung = submit(c, [("hang.png", png())]).json()
        done = wait_job(c, hung["id"], A, timeout=10)
        assert done["status"] == "failed"
        assert done["items"][0]["error"]["code"] == "time_limit"
        thread = f"facecloak-item-{hung['id']}-0"
        assert thread in liveness.abandoned_threads()  # the pool thread walked away from it

        later = submit(c, [("a.png", png())]).json()
        ok = wait_job(c, later["id"], A, timeout=10)
        assert ok["status"] == "succeeded" and ok["items"][0]["status"] == "protected"

        release.set()  # the abandoned handler returns: its late result is discarded
        deadline = time.monotonic() + 5
        while thread in liveness.abandoned_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert thread not in liveness.abandoned_threads()
        again = c.get(f"/v1/jobs/{hung['id']}", headers=A).json()
        assert again["status"] == "failed"
        assert again["items"][0]["error"]["code"] == "time_limit"


def test_a_run_without_progress_stops_renewing_its_lease(
    tmp_path: Path, release: threading.Event
) -> None:
    s = settings(
        tmp_path, task_time_limit_seconds=60, progress_timeout_seconds=1, lease_seconds=0.6
    )
    app = create_app(s, handlers={"protect": _hanging(release)}, background=False)
    with TestClient(app) as c:
        store = app.state.fc.ctx.store
        start = store.now()
        job_id = submit(c, [("hang.png", png())]).json()["id"]
        leases: list[float] = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            item = _record(app, job_id).items[0]
            if item.lease_until is not None:
                leases.append(item.lease_until)
            if item.status == "failed":
                break
            time.sleep(0.05)
        rec = _record(app, job_id)
        item = rec.items[0]
        assert rec.status == "failed" and item.status == "failed", rec
        assert item.error is not None and item.error.code == "no_progress"
        assert item.lease_until is None and item.worker is None and item.attempts == 1
        # renewed only within the progress bound (1 s) plus one lease, never up to the limit
        assert leases and max(leases) <= start + 1 + 0.6 + 1.0
        time.sleep(1.0)
        assert _record(app, job_id).items[0].lease_until is None


def test_a_slow_run_that_reports_progress_keeps_its_lease(tmp_path: Path) -> None:
    def slow(data: bytes, filename: str, options: BaseModel, progress: ProgressFn) -> ItemOutcome:
        for step in range(25):  # 2.5 s: past the progress bound and several leases
            progress(step, 25)
            time.sleep(0.1)
        return fake_protect(0.0)(data, filename, options, progress)

    s = settings(tmp_path, progress_timeout_seconds=1, lease_seconds=0.6)
    app = create_app(s, handlers={"protect": slow})  # with the reaper: a lapsed lease retries
    with TestClient(app) as c:
        job_id = submit(c, [("a.png", png())]).json()["id"]
        done = wait_job(c, job_id, A, timeout=15)
        assert done["status"] == "succeeded"
        assert _record(app, job_id).items[0].attempts == 1


def test_past_the_abandoned_bound_the_caller_waits_for_the_handler(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    monkeypatch.setattr(liveness, "MAX_ABANDONED", 0)
    watch = liveness.Watch(time_limit=60, progress_timeout=0)

    def give_up() -> None:
        watch.verdict = liveness.GaveUp("time_limit", "test")
        watch.woken.set()

    threading.Timer(0.1, give_up).start()
    threading.Timer(0.5, release.set).start()
    start = time.monotonic()
    assert liveness.run_guarded(lambda: release.wait() and "late", watch, "bounded") == "late"
    assert time.monotonic() - start >= 0.4
    assert "bounded" not in liveness.abandoned_threads()
