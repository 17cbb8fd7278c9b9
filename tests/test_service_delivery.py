"""Service hardening, third part: streamed batch results, durable and fair webhooks, leases on
the store's clock (each test failed on the code before)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from facecloak.contract.context import Context
from facecloak.contract.records import ItemRecord, JobRecord
from facecloak.contract.storage import LocalStorage
from facecloak.contract.store import JobStore, SQLiteJobStore
from service.app import create_app
from tests.service_fixtures import (
    A,
    B,
    fake_handlers,
    fake_verify,
    free_port,
    make_app,
    png,
    settings,
    submit,
    wait_job,
)


class _CountingStorage(LocalStorage):
    """Counts reads of results (``/out/`` keys)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.result_reads = 0

    def get(self, key: str) -> bytes:
        if "/out/" in key:
            self.result_reads += 1
        return super().get(key)


# 5. batch results ------------------------------------------------------------------------------


def test_the_batch_zip_is_streamed_one_photo_at_a_time(tmp_path: Path) -> None:
    s = settings(tmp_path)
    base = Context.from_settings(s)
    storage = _CountingStorage(tmp_path / "blobs")
    ctx = Context(s, storage, base.store)
    app = create_app(s, handlers=fake_handlers(0.0), verifier=fake_verify, ctx=ctx)
    photos = [(f"p{i}.png", png(20 + i, 20)) for i in range(3)]
    with TestClient(app) as c:
        job = submit(c, photos).json()
        assert wait_job(c, job["id"], A)["status"] == "succeeded"
        storage.result_reads = 0
        download = app.state.fc.jobs.result("tenant-a", job["id"], None)
        chunks = iter(download.data)
        first = next(chunks)
        assert isinstance(first, bytes) and storage.result_reads == 1  # not the whole batch
        body = first + b"".join(chunks)
        assert storage.result_reads == 3
        r = c.get(f"/v1/jobs/{job['id']}/result", headers=A)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "content-length" not in r.headers  # sent as it is written
    for content in (body, r.content):
        archive = zipfile.ZipFile(io.BytesIO(content))
        assert archive.testzip() is None
        assert archive.namelist() == ["p0.png", "p1.png", "p2.png", "manifest.json"]
        for name, data in photos:
            assert archive.read(name) == b"PROTECTED:" + data
        assert b'"status": "succeeded"' in archive.read("manifest.json")


# 6. webhooks: durable outbox, per-tenant fairness ----------------------------------------------


class _Hooks(BaseHTTPRequestHandler):
    """Records deliveries; paths under ``/hang`` wait for ``release`` first."""

    got: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    hanging: ClassVar[list[str]] = []
    release: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/hang"):
            _Hooks.hanging.append(self.path)
            _Hooks.release.wait(60)
        _Hooks.got.append((self.path, dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def hooks() -> Iterator[int]:
    _Hooks.got, _Hooks.hanging, _Hooks.release = [], [], threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    _Hooks.release.set()
    server.shutdown()


def _until(condition: Any, timeout: float = 30.0) -> bool:
    """Wait for ``condition()`` to hold (a state, not a duration); whether it did."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(condition())


def test_pending_webhooks_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: every attempt fails
    url = f"http://127.0.0.1:{port}/hook"
    over: dict[str, Any] = {"webhook_allowed_hosts": "127.0.0.1", "webhook_max_attempts": 50}
    app = make_app(tmp_path, webhook_backoff_seconds=60, **over)
    with TestClient(app) as c:
        job = submit(c, [("a.png", png())], data={"callback_url": url}).json()
        wait_job(c, job["id"], A)
        store = app.state.fc.ctx.store
        assert _until(lambda: store.get(job["id"]).webhook.error == "delivery_failed")
    hook = store.get(job["id"]).webhook
    assert hook.status == "pending" and hook.error == "delivery_failed"
    server = HTTPServer(("127.0.0.1", port), _Hooks)
    _Hooks.got = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:

        def due_now(rec: JobRecord) -> None:  # skip the 60 s backoff, as time passing would
            assert rec.webhook is not None
            rec.webhook.next_at = 0.0

        store.update(job["id"], due_now)
        restarted = make_app(tmp_path, **over)  # the same job store, a new process
        with TestClient(restarted):
            assert _until(lambda: len(_Hooks.got) == 1)
            fresh = restarted.state.fc.ctx.store
            assert _until(lambda: fresh.get(job["id"]).webhook.status == "delivered")
    finally:
        server.shutdown()
    _, headers, body = _Hooks.got[0]
    assert headers["webhook-id"] == f"msg_{job['id']}" and json.loads(body)["id"] == job["id"]


def test_a_hanging_receiver_does_not_hold_up_other_tenants(tmp_path: Path, hooks: int) -> None:
    app = make_app(
        tmp_path,
        webhook_allowed_hosts="127.0.0.1",
        webhook_concurrency=2,
        webhook_timeout_seconds=60,
    )
    base = f"http://127.0.0.1:{hooks}"
    with TestClient(app) as c:
        slow = [
            submit(c, [("a.png", png())], data={"callback_url": f"{base}/hang/{i}"}).json()
            for i in range(3)
        ]
        for job in slow:
            wait_job(c, job["id"], A)
        fast = submit(c, [("b.png", png())], headers=B, data={"callback_url": f"{base}/b"})
        wait_job(c, fast.json()["id"], B)
        try:
            assert _until(lambda: any(path == "/b" for path, _, _ in _Hooks.got))
            assert len(_Hooks.hanging) == 1  # one attempt per tenant at a time
            assert not _Hooks.release.is_set()  # tenant-a's receiver is still hanging
        finally:
            _Hooks.release.set()
        assert _until(lambda: len(_Hooks.got) == 4)  # then tenant-a's, one after another
        assert sorted(p for p, _, _ in _Hooks.got if p != "/b") == ["/hang/0", "/hang/1", "/hang/2"]


def _hooked(job_id: str, tenant: str, finished_at: float) -> JobRecord:
    job = JobRecord(id=job_id, tenant=tenant, callback_url="https://hooks.example/h")
    job.items = [ItemRecord(index=0, filename="a.png", status="protected")]
    job.status, job.finished_at = "succeeded", finished_at
    return job


def test_the_outbox_gives_each_tenant_its_turn(jobstore: JobStore) -> None:
    for i in range(5):
        jobstore.create(_hooked(f"a{i}", "tenant-a", 10.0 + i))
    jobstore.create(_hooked("b0", "tenant-b", 20.0))
    jobstore.create(_hooked("c0", "tenant:c", 99.0))  # not due at t=50
    queued = _hooked("q0", "tenant-d", 1.0)
    queued.status = "running"  # an unfinished job has nothing to send yet
    jobstore.create(queued)
    assert sorted(j.id for j in jobstore.webhooks_due(50.0)) == ["a0", "b0"]

    def delivered(rec: JobRecord) -> None:
        assert rec.webhook is not None
        rec.webhook.status = "delivered"

    jobstore.update("a0", delivered)
    assert sorted(j.id for j in jobstore.webhooks_due(50.0)) == ["a1", "b0"]
    jobstore.delete("b0")
    assert sorted(j.id for j in jobstore.webhooks_due(100.0)) == ["a1", "c0"]
    assert abs(jobstore.now() - time.time()) < 60  # Redis TIME on this host's Redis


# 7. leases on the store's clock ----------------------------------------------------------------


class _SkewedStore(SQLiteJobStore):
    """A job store whose clock is ``offset`` seconds off this host's (as another host's is)."""

    def __init__(self, path: Path, offset: float) -> None:
        super().__init__(path)
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


def _running(job_id: str, lease_until: float) -> JobRecord:
    job = JobRecord(id=job_id, tenant="tenant-a", status="running")
    job.items = [ItemRecord(index=0, filename="a.png", status="running", worker="w", attempts=1)]
    job.items[0].lease_until = lease_until
    return job


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
def test_leases_are_set_and_checked_on_the_store_clock(tmp_path: Path, offset: float) -> None:
    from facecloak.contract.options import ItemOutcome
    from facecloak.contract.runner import run_item
    from facecloak.contract.sweeps import reap

    store = _SkewedStore(tmp_path / "jobs.sqlite3", offset)
    ctx = Context(settings(tmp_path, lease_seconds=60), LocalStorage(tmp_path / "b"), store)
    job = JobRecord(id="j1", tenant="tenant-a", items=[ItemRecord(index=0, filename="a.png")])
    store.create(job)
    ctx.storage.put("jobs/j1/in/0", png())
    leases: list[float] = []

    def handler(data: bytes, filename: str, options: Any, progress: Any) -> ItemOutcome:
        leases.append(store.get("j1").items[0].lease_until or 0.0)  # type: ignore[union-attr]
        return ItemOutcome(filename=filename, status="protected", faces=1, output=data)

    run_item(ctx, {"protect": handler}, "j1", 0, lambda job: None)
    assert abs(leases[0] - (store.now() + 60)) < 30  # not this host's clock (an hour off)
    # ran out by the store's clock; this host's clock says otherwise (or the reverse)
    store.create(_running("j2", store.now() - 1))
    store.create(_running("j3", store.now() + 30))
    sent: list[tuple[str, int, str]] = []
    reap(ctx, lambda *a: sent.append(a), lambda job: None)
    assert sent == [("j2", 0, "protect")]
    assert store.get("j2").items[0].status == "queued"  # type: ignore[union-attr]
    assert store.get("j3").items[0].status == "running"  # type: ignore[union-attr]
