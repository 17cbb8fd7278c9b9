"""Result files of runs killed between saving a result and committing it are not left behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from facecloak.contract.context import Context
from facecloak.contract.records import ItemRecord, JobRecord
from facecloak.contract.runner import original_key, reap, run_item, sweep_orphans
from facecloak.contract.storage import LocalStorage
from tests.service_fixtures import fake_handlers, png, settings


class Killed(BaseException):
    """The worker process dying (nothing after it runs)."""


class DiesAfterSavingResult(LocalStorage):
    """Saves a result blob, then the process is killed before the commit."""

    def put(self, key: str, data: bytes) -> None:
        super().put(key, data)
        if "/out/" in key:
            raise Killed(key)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _killed_run(tmp: Path, **overrides: Any) -> Context:
    """A one-photo job whose first run saved its result and died; returns the context."""
    ctx = Context.from_settings(settings(tmp, lease_seconds=0.2, **overrides))
    job = JobRecord(id="job_k", tenant="tenant-a")
    job.items = [ItemRecord(index=0, filename="a.png")]
    ctx.store.create(job)
    ctx.storage.put(original_key("job_k", 0), png())
    doomed = Context(ctx.settings, DiesAfterSavingResult(tmp / "blobs"), ctx.store)
    with pytest.raises(Killed):
        run_item(doomed, fake_handlers(0.0), "job_k", 0, lambda j: None)
    assert len([f for f in _files(tmp / "blobs") if "/out/" in f]) == 1
    time.sleep(0.3)  # the lease runs out
    return ctx


def test_the_rescuing_run_deletes_the_killed_runs_result(tmp_path: Path) -> None:
    ctx = _killed_run(tmp_path, orphan_max_age_seconds=0)
    sent: list[tuple[str, int, str]] = []
    reap(ctx, lambda *a: sent.append(a), lambda j: None)
    assert sent == [("job_k", 0, "protect")]
    run_item(ctx, fake_handlers(0.0), "job_k", 0, lambda j: None)
    rec = ctx.store.get("job_k")
    assert rec is not None and rec.status == "succeeded"
    item = rec.items[0]
    assert item.status == "protected" and item.attempts == 2 and item.result_key
    assert _files(tmp_path / "blobs") == [item.result_key]
    assert sweep_orphans(ctx) == []  # the job has a record: its result stays
    assert ctx.storage.get(item.result_key).startswith(b"PROTECTED:")


def test_the_sweep_that_gives_up_deletes_the_killed_runs_result(tmp_path: Path) -> None:
    ctx = _killed_run(tmp_path, max_attempts=1)
    finished: list[JobRecord] = []
    reap(ctx, lambda *a: None, finished.append)
    rec = ctx.store.get("job_k")
    assert rec is not None and [j.id for j in finished] == ["job_k"]
    assert rec.items[0].error is not None and rec.items[0].error.code == "worker_lost"
    assert _files(tmp_path / "blobs") == []


def test_a_late_delivery_of_a_failed_photo_deletes_the_killed_runs_result(tmp_path: Path) -> None:
    ctx = _killed_run(tmp_path, max_attempts=1)
    run_item(ctx, fake_handlers(0.0), "job_k", 0, lambda j: None)  # the broker redelivers
    rec = ctx.store.get("job_k")
    assert rec is not None and rec.items[0].status == "failed"
    assert rec.items[0].error is not None and rec.items[0].error.code == "worker_lost"
    assert _files(tmp_path / "blobs") == []
