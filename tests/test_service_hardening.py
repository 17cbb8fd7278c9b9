"""Service hardening: no unprotected photo left behind, bounded uploads, no SSRF, signed
webhooks, honest answers, no job stuck forever (each test failed on the code before)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from facecloak.contract.context import Context
from facecloak.contract.records import ItemRecord, JobRecord
from facecloak.contract.storage import LocalStorage
from facecloak.contract.sweeps import Resends
from facecloak.contract.webhooks import (
    Target,
    deliver_once,
    resolve_callback,
    send_job_webhook,
    sign,
    tenant_secrets,
    verify_signature,
)
from service.app import create_app
from tests.service_fixtures import (
    METRICS,
    A,
    err,
    fake_handlers,
    fake_verify,
    make_app,
    png,
    settings,
    submit,
    wait_job,
)

MB = 1024 * 1024


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class _FlakyStorage(LocalStorage):
    """Fails the ``fail_at``-th put (a full disk)."""

    def __init__(self, root: Path, fail_at: int = 2) -> None:
        super().__init__(root)
        self.puts, self.fail_at = 0, fail_at

    def put(self, key: str, data: bytes) -> None:
        self.puts += 1
        if self.puts == self.fail_at:
            raise OSError(28, "No space left on device")
        super().put(key, data)


def _ctx(tmp: Path, storage: Any = None, **overrides: Any) -> Context:
    base = Context.from_settings(settings(tmp, **overrides))
    return Context(base.settings, storage or base.storage, base.store)


def _app(tmp: Path, ctx: Context | None = None, **overrides: Any) -> Any:
    return create_app(
        settings(tmp, **overrides),
        handlers=fake_handlers(0.0),
        verifier=fake_verify,
        ctx=ctx,
        background=False,
    )


# 1. privacy ------------------------------------------------------------------------------


def test_verify_stores_nothing_when_the_second_photo_is_refused(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    with TestClient(make_app(tmp_path)) as c:
        files = [("original", ("gps.png", png())), ("protected", ("x.txt", b"not an image"))]
        r = c.post("/v1/verify", headers=A, files=files)
        assert r.status_code == 415 and err(r) == "not_an_image"
    assert _files(blobs) == []


def test_verify_deletes_both_photos_when_it_times_out(tmp_path: Path) -> None:
    def slow(original: bytes, protected: bytes, models: Any) -> Any:
        time.sleep(1.0)
        return fake_verify(original, protected, models)

    app = make_app(tmp_path, verifier=slow, verify_timeout_seconds=0.2)
    with TestClient(app) as c:
        files = [("original", ("a.png", png())), ("protected", ("b.png", png()))]
        r = c.post("/v1/verify", headers=A, files=files)
        assert r.status_code == 504 and err(r) == "verify_timeout"
        assert _files(tmp_path / "blobs") == []  # gone when the answer is sent


def test_submit_leaves_no_original_when_storage_fails_part_way(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, _FlakyStorage(tmp_path / "blobs", fail_at=2))
    with TestClient(_app(tmp_path, ctx)) as c:
        r = submit(c, [("a.png", png()), ("b.png", png(color=(1, 2, 3)))])
        assert r.status_code == 503, r.text
    assert _files(tmp_path / "blobs") == []


def test_orphan_sweep_deletes_old_uploads_without_a_record(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, orphan_max_age_seconds=60)) as c:
        live = submit(c, [("a.png", png())]).json()["id"]
        st = c.app.state.fc  # type: ignore[attr-defined]
        st.ctx.storage.put("jobs/job_gone/in/0", b"face")
        st.ctx.storage.put("verify/abc/original", b"face")
        st.ctx.storage.put(f"jobs/{live}/in/9", b"face")
        st.ctx.storage.put("jobs/job_new/in/0", b"face")  # too young to be an orphan
        old = time.time() - 3600
        for path in (tmp_path / "blobs").rglob("*"):
            if "job_new" not in str(path):
                os.utime(path, (old, old))
        gone = c.app.state.reaper.sweep_orphans()  # type: ignore[attr-defined]
        assert sorted(gone) == ["jobs/job_gone", "verify/abc"]
        left = _files(tmp_path / "blobs")
        assert f"jobs/{live}/in/9" in left and "jobs/job_new/in/0" in left
        assert not [f for f in left if "job_gone" in f or f.startswith("verify")]


def test_job_store_and_blobs_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with TestClient(make_app(data)) as c:
        submit(c, [("a.png", png())])
    for path in data.glob("jobs.sqlite3*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "blobs").stat().st_mode) == 0o700


# 2. bounded uploads ------------------------------------------------------------------------


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    head = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    yield head
    for _ in range(total // size):
        yield b"\0" * size
    yield b"\r\n--b--\r\n"


def test_chunked_upload_past_the_request_limit_is_413(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_request_bytes=3 * MB, max_upload_bytes=25 * MB)
    headers = {**A, "Content-Type": "multipart/form-data; boundary=b"}
    with TestClient(app) as c:
        r = c.post("/v1/protect", content=_chunks(5 * MB), headers=headers)
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert r.status_code == 413 and err(r) == "request_too_large"


async def _drive(app: Any, chunks: list[bytes], then: str = "end") -> tuple[list[int], int]:
    """Run one POST /v1/protect through the ASGI app; (statuses sent, chunks it pulled)."""
    pulled, statuses = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": True}
        if then == "hang":
            await asyncio.sleep(30)
        if then == "disconnect":
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/protect",
        "raw_path": b"/v1/protect",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"x-api-key", b"key-a"),
            (b"content-type", b"multipart/form-data; boundary=b"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return statuses, pulled


def test_uploads_are_cut_off_while_streaming(tmp_path: Path) -> None:
    chunks = list(_chunks(40 * MB, MB))
    app = _app(tmp_path, max_request_bytes=3 * MB, max_upload_bytes=MB)
    statuses, pulled = asyncio.run(_drive(app, chunks))
    assert statuses == [413] and pulled <= 3, pulled  # per file: stopped past 1 MB
    app = _app(tmp_path / "2", max_request_bytes=3 * MB, max_upload_bytes=25 * MB)
    statuses, pulled = asyncio.run(_drive(app, chunks))
    assert statuses == [413] and pulled <= 5, pulled  # whole request: stopped past 3 MB


def test_client_disconnect_mid_upload_is_not_a_server_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path)
    with caplog.at_level(logging.INFO):
        statuses, _ = asyncio.run(_drive(app, list(_chunks(MB, MB))[:2], then="disconnect"))
    assert 500 not in statuses
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "client disconnected" in caplog.text


def test_a_stalled_body_times_out(tmp_path: Path) -> None:
    app = _app(tmp_path, request_body_timeout_seconds=0.2)
    statuses, _ = asyncio.run(_drive(app, list(_chunks(MB, MB))[:1], then="hang"))
    assert statuses == [408]


# 3. SSRF -----------------------------------------------------------------------------------

_PRIVATE = [
    "http://127.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://10.1.2.3/",
    "http://[::1]/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "https://localhost:8443/",
]


@pytest.mark.parametrize("url", _PRIVATE)
def test_private_callback_urls_are_refused_at_submit(tmp_path: Path, url: str) -> None:
    with TestClient(make_app(tmp_path)) as c:
        r = submit(c, [("a.png", png())], data={"callback_url": url})
        assert r.status_code == 422
        assert err(r) in ("callback_host_forbidden", "callback_host_unresolvable"), r.text


def test_allow_list_admits_a_local_receiver_explicitly(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, webhook_allowed_hosts="127.0.0.1")) as c:
        ok = submit(c, [("a.png", png())], data={"callback_url": "http://127.0.0.1:9/h"})
        assert ok.status_code == 202, ok.text
        other = submit(c, [("a.png", png())], data={"callback_url": "http://10.0.0.1/h"})
        assert other.status_code == 422 and err(other) == "callback_host_not_allowed"


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012
    drip = False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.drip:
            for byte in b"HTTP/1.1 204 No Content\r\n\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.3)
            return
        _Receiver.got.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[int]:
    _Receiver.got, _Receiver.drip = [], False
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


def _job(ctx: Context, url: str, tenant: str = "tenant-a") -> str:
    job = JobRecord(id="job_1", tenant=tenant, callback_url=url, status="succeeded")
    job.items = [ItemRecord(index=0, filename="a.png", status="protected")]
    ctx.store.create(job)
    return job.id


def test_delivery_checks_the_url_again(tmp_path: Path, receiver: int) -> None:
    ctx = _ctx(tmp_path, webhook_max_attempts=1)  # no allow list: 127.0.0.1 is refused
    assert not send_job_webhook(ctx, _job(ctx, f"http://127.0.0.1:{receiver}/h"))
    assert _Receiver.got == []


def test_delivery_connects_to_the_checked_address(receiver: int) -> None:
    """The name is not resolved again when connecting (no DNS rebinding)."""
    target = Target(f"http://hooks.example:{receiver}/h", "hooks.example", receiver, ("127.0.0.1",))
    assert deliver_once(target, b"{}", ["k"], "msg_1", 5.0)
    headers, _ = _Receiver.got[0]
    assert headers["Host"] == f"hooks.example:{receiver}"
    assert resolve_callback(f"http://127.0.0.1:{receiver}/", "127.0.0.1").addresses == (
        "127.0.0.1",
    )


# 4. signing ---------------------------------------------------------------------------------


def test_webhooks_are_signed_per_tenant_standard_webhooks(tmp_path: Path, receiver: int) -> None:
    ctx = _ctx(
        tmp_path,
        webhook_secret="",
        webhook_secrets="tenant-a:new,tenant-a:old,tenant-b:bee",
        webhook_allowed_hosts="127.0.0.1",
    )
    assert tenant_secrets(ctx.settings, "tenant-a") == ["new", "old"]
    assert tenant_secrets(ctx.settings, "nobody") == []
    assert send_job_webhook(ctx, _job(ctx, f"http://127.0.0.1:{receiver}/h"))
    headers, body = _Receiver.got[0]
    assert headers["webhook-id"] == "msg_job_1"
    assert len(headers["webhook-signature"].split()) == 2  # both keys during the rotation
    assert verify_signature("new", headers, body) and verify_signature("old", headers, body)
    assert not verify_signature("bee", headers, body)
    t = int(headers["webhook-timestamp"])
    assert headers["webhook-signature"].split()[0] == sign("new", "msg_job_1", t, body)
    assert not verify_signature("new", headers, body, at=t + 3600)  # replay


def test_no_secret_means_no_callbacks(tmp_path: Path) -> None:
    app = make_app(tmp_path, webhook_secret="", webhook_allowed_hosts="127.0.0.1")
    with TestClient(app) as c:
        r = submit(c, [("a.png", png())], data={"callback_url": "http://127.0.0.1:9/h"})
        assert r.status_code == 422 and err(r) == "webhook_not_configured"
        assert submit(c, [("a.png", png())]).status_code == 202
    with pytest.raises(RuntimeError, match="WEBHOOK_SECRET"):
        create_app(settings(tmp_path / "d", webhook_secret="", broker_url="redis://127.0.0.1:1/0"))


def test_a_dripping_receiver_is_cut_off_at_the_deadline(receiver: int) -> None:
    _Receiver.drip = True
    target = Target(f"http://127.0.0.1:{receiver}/h", "127.0.0.1", receiver, ("127.0.0.1",))
    start = time.monotonic()
    assert not deliver_once(target, b"{}", ["k"], "msg_1", 1.0)
    assert time.monotonic() - start < 2.5


# 5. correctness ------------------------------------------------------------------------------


def test_distributed_verify_timeout_is_504(tmp_path: Path) -> None:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from service.dispatch import CeleryDispatcher

    class _Pending:
        def get(self, timeout: float) -> Any:
            raise CeleryTimeout("The operation timed out.")

        def revoke(self) -> None:
            pass

        def forget(self) -> None:
            pass

    s = settings(
        tmp_path,
        broker_url="redis://127.0.0.1:1/0",
        webhook_secrets="tenant-a:s3cret-a,tenant-b:s3cret-b",  # no shared key in distributed mode
    )
    ctx = Context(s, _ctx(tmp_path).storage, _ctx(tmp_path).store)
    dispatcher = CeleryDispatcher(ctx)
    dispatcher.app.send_task = lambda *a, **k: _Pending()  # type: ignore[method-assign]
    with TestClient(create_app(s, ctx=ctx, dispatcher=dispatcher, background=False)) as c:
        files = [("original", ("a.png", png())), ("protected", ("b.png", png()))]
        r = c.post("/v1/verify", headers=A, files=files)
        assert r.status_code == 504 and err(r) == "verify_timeout"
    assert _files(tmp_path / "blobs") == []


def test_a_job_without_any_result_has_no_result_url(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        job = submit(c, [("noface.png", png())]).json()
        done = wait_job(c, job["id"], A)
        assert done["items"][0]["status"] == "no_face"
        assert done["result_url"] is None
        assert submit(c, [("face.png", png())]).status_code == 202


def test_readyz_writes_nothing_and_hides_details(tmp_path: Path) -> None:
    storage = _FlakyStorage(tmp_path / "blobs", fail_at=10**9)
    with TestClient(_app(tmp_path, _ctx(tmp_path, storage))) as c:
        for _ in range(3):
            assert c.get("/readyz").status_code == 200
        assert storage.puts == 0
        os.chmod(tmp_path / "blobs", 0o500)
        try:
            r = c.get("/readyz")
        finally:
            os.chmod(tmp_path / "blobs", 0o700)
        if os.geteuid() != 0:
            assert r.status_code == 503 and r.json()["checks"]["storage"] == "unavailable"
        assert str(tmp_path) not in r.text


def test_metrics_count_unknown_methods_as_other(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        c.request("BREW", "/healthz")
        text = c.get("/metrics", headers=METRICS).text
    assert 'method="other"' in text and "BREW" not in text


def test_idempotency_keys_do_not_collide_across_tenants_in_redis(tmp_path: Path) -> None:
    from facecloak.contract.store_redis import RedisJobStore
    from tests.service_fixtures import RedisServer

    redis = RedisServer(tmp_path)
    redis.start()
    try:
        store = RedisJobStore(redis.url)
        first = JobRecord(id="job_a", tenant="a:b", idempotency_key="c")
        second = JobRecord(id="job_b", tenant="a", idempotency_key="b:c")
        assert store.create(first)[1]
        got, created = store.create(second)
        assert created and got.id == "job_b"
    finally:
        redis.stop()


def test_uvicorn_runs_with_connection_limits(tmp_path: Path) -> None:
    from service.server import uvicorn_options

    options = uvicorn_options(settings(tmp_path, limit_concurrency=50))
    assert options["limit_concurrency"] == 50
    assert options["h11_max_incomplete_event_size"] and options["timeout_keep_alive"]


# 6. nothing stuck ------------------------------------------------------------------------------


def test_items_queued_too_long_are_dispatched_again(tmp_path: Path) -> None:
    from facecloak.contract.runner import reap

    ctx = _ctx(tmp_path, queued_redispatch_seconds=60)
    job = JobRecord(id="job_q", tenant="tenant-a", created_at=time.time() - 600)
    job.items = [ItemRecord(index=0, filename="a.png")]
    ctx.store.create(job)
    sent: list[tuple[str, int, str]] = []
    memory = Resends()
    reap(ctx, lambda *a: sent.append(a), lambda j: None, memory)
    reap(ctx, lambda *a: sent.append(a), lambda j: None, memory)
    assert sent == [("job_q", 0, "protect")]  # once per period, not every sweep


def test_a_long_backlog_is_not_flooded_with_resends() -> None:
    """Each re-dispatch of a still-queued item doubles the wait before the next one."""
    memory, key, sends = Resends(), ("job_q", 0), []
    for minute in range(0, 24 * 60):  # a sweep a minute for a day, period 15 minutes
        t = 60.0 * minute
        if memory.due(key, 0.0, t, 900.0):
            memory.record(key, t)
            sends.append(minute)
    assert sends == [16, 47, 108, 229, 470, 951]  # 15, 30, 60, 120, 240, 480 min apart
    memory.keep_only({"another_job"})
    assert memory.due(key, 0.0, 16 * 60.0, 900.0)  # forgotten with its job


def test_a_hung_item_fails_at_the_wall_clock_deadline(tmp_path: Path) -> None:
    def hang(data: bytes, filename: str, options: Any, progress: Any) -> Any:
        time.sleep(4)
        raise AssertionError("never committed")

    s = settings(tmp_path, task_time_limit_seconds=1, lease_seconds=0.6)
    app = create_app(s, handlers={"protect": hang}, background=False)
    with TestClient(app) as c:
        job = submit(c, [("a.png", png())]).json()
        done = wait_job(c, job["id"], A, timeout=3)
        assert done["status"] == "failed"
        assert done["items"][0]["error"]["code"] == "time_limit"


# 7. wrong keys ---------------------------------------------------------------------------------


def test_wrong_keys_are_rate_limited_per_address(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, auth_failures_per_minute=5)) as c:
        wrong = [{"X-API-Key": f"guess{i}"} for i in range(8)]
        codes = [c.get("/v1/jobs", headers=h).status_code for h in wrong]
        assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
        assert c.get("/v1/jobs", headers=A).status_code == 200


def test_resolution_failures_are_refused(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as c:
        r = submit(c, [("a.png", png())], data={"callback_url": "http://no-such-host.invalid/"})
        assert r.status_code == 422 and err(r) == "callback_host_unresolvable"
    assert socket and io  # modules used by helpers above
