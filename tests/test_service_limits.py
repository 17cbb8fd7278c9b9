"""Service hardening, second part: connection limits, protected metrics, per-tenant caps,
verify on its own pool (each test failed on the code before)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from facecloak.contract.records import ItemRecord, JobRecord
from facecloak.contract.store import JobStore, QuotaExceeded
from service.app import create_app
from service.server import uvicorn_options
from tests.service_fixtures import (
    METRICS,
    A,
    B,
    err,
    fake_verify,
    free_port,
    make_app,
    png,
    settings,
    submit,
    wait_http,
    wait_job,
)


@contextmanager
def served(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` with the options ``facecloak serve`` uses; yields the port."""
    port = free_port()
    options = uvicorn_options(app.state.fc.settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_http(f"http://127.0.0.1:{port}/healthz", 20)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


def _closed_by_server(sock: socket.socket, drip: bytes | None) -> bool:
    """Whether the server closes ``sock`` within 30 s (sending ``drip`` every 0.1 s)."""
    deadline = time.monotonic() + 30
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if drip is not None:
                sock.sendall(drip)
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


# 1. connections --------------------------------------------------------------------------------


def test_a_request_head_that_never_ends_is_closed(tmp_path: Path) -> None:
    with served(make_app(tmp_path, header_timeout_seconds=0.5)) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert _closed_by_server(sock, None)
        with socket.create_connection(("127.0.0.1", port)) as sock:  # one line at a time
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert _closed_by_server(sock, b"X-Drip: 1\r\n")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def test_a_keep_alive_connection_gets_a_new_head_deadline(tmp_path: Path) -> None:
    app = make_app(tmp_path, header_timeout_seconds=0.5, timeout_keep_alive_seconds=60)
    with served(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the second head never ends
        assert _closed_by_server(sock, None)


def _one_write(port: int, head: bytes) -> bytes:
    """Send ``head`` in a single write; the answer (read until the server closes)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_an_oversized_head_in_one_write_gets_431(tmp_path: Path) -> None:
    with served(make_app(tmp_path, max_header_bytes=8192)) as port:
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 9000 + b"\r\n"
        answer = _one_write(port, big)  # whole: h11 parses it before any size check
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        assert b'"request_header_too_large"' in answer
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 90) for i in range(100))
        answer = _one_write(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]  # many small headers
        small = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 7000 + b"\r\n"
        assert _one_write(port, small).startswith(b"HTTP/1.1 200")


def test_connections_past_limit_concurrency_get_503(tmp_path: Path) -> None:
    app = make_app(tmp_path, limit_concurrency=2, header_timeout_seconds=60)
    with served(app) as port:
        url = f"http://127.0.0.1:{port}/healthz"
        with socket.create_connection(("127.0.0.1", port)):  # an idle connection holds a slot
            assert httpx.get(url).status_code == 503


# 2. metrics ------------------------------------------------------------------------------------


def test_metrics_need_the_metrics_token(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, auth_failures_per_minute=3)) as c:
        assert c.get("/metrics", headers=METRICS).status_code == 200
        r = c.get("/metrics")
        assert r.status_code == 401 and err(r) == "missing_metrics_token"
        assert r.headers["WWW-Authenticate"] == "Bearer"
        r = c.get("/metrics", headers=A)  # a tenant's API key is not the operator's token
        assert r.status_code == 401 and err(r) == "missing_metrics_token"
        wrong = [c.get("/metrics", headers={"Authorization": f"Bearer x{i}"}) for i in range(4)]
        assert [w.status_code for w in wrong] == [401, 401, 401, 429]
        assert err(wrong[0]) == "invalid_metrics_token"
        assert "facecloak_http_requests_total" not in "".join(w.text for w in wrong)


def test_metrics_are_off_without_a_token(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, metrics_token="")) as c:
        for headers in ({}, {"Authorization": "Bearer "}, METRICS):
            r = c.get("/metrics", headers=headers)
            assert r.status_code == 404 and err(r) == "metrics_disabled"


# 3. per-tenant caps ----------------------------------------------------------------------------


def _held(release: threading.Event) -> Any:
    """A protect handler that holds its photo until ``release`` is set."""

    def run(data: bytes, filename: str, options: Any, progress: Any) -> Any:
        from facecloak.contract.options import ItemOutcome

        release.wait(30)
        return ItemOutcome(filename=filename, status="protected", faces=1, output=data)

    return run


def test_a_tenant_past_its_open_items_quota_gets_429(tmp_path: Path) -> None:
    release = threading.Event()
    s = settings(tmp_path, max_open_items_per_tenant=3, embedded_workers=1)
    app = create_app(s, handlers={"protect": _held(release)}, background=False)
    with TestClient(app) as c:
        first = submit(c, [("a.png", png()), ("b.png", png())])
        assert first.status_code == 202
        keyed = submit(c, [("c.png", png())], headers={**A, "Idempotency-Key": "k1"})
        assert keyed.status_code == 202  # 2 + 1 = 3: at the limit, not past it
        r = submit(c, [("d.png", png())])
        assert r.status_code == 429 and err(r) == "quota_exceeded"
        assert r.json()["error"]["details"] == {"open_items": 3, "requested": 1, "limit": 3}
        assert int(r.headers["Retry-After"]) > 0
        again = submit(c, [("c.png", png())], headers={**A, "Idempotency-Key": "k1"})
        assert again.status_code == 202 and again.json()["id"] == keyed.json()["id"]
        assert submit(c, [("e.png", png())], headers=B).status_code == 202  # per tenant
        big = submit(c, [(f"{i}.png", png()) for i in range(4)], headers=B)
        assert big.status_code == 429 and "split" in big.json()["error"]["message"]
        jobs = {p.name for p in (tmp_path / "blobs" / "jobs").iterdir()}
        assert jobs == {first.json()["id"], keyed.json()["id"], submit_id(c, B)}
        release.set()
        for job in (first.json(), keyed.json()):
            assert wait_job(c, job["id"], A, timeout=30)["status"] == "succeeded"
        assert submit(c, [("d.png", png())]).status_code == 202  # room again


def submit_id(c: Any, headers: dict[str, str]) -> str:
    """The id of the tenant's newest job."""
    newest: str = c.get("/v1/jobs", headers=headers).json()["jobs"][0]["id"]
    return newest


def _job(job_id: str, tenant: str = "t", photos: int = 1) -> JobRecord:
    items = [ItemRecord(index=i, filename=f"{i}.png") for i in range(photos)]
    return JobRecord(id=job_id, tenant=tenant, items=items)


def test_the_quota_holds_under_concurrent_submits(jobstore: JobStore) -> None:
    jobstore.create(_job("old", photos=2), max_open_items=5)
    outcomes: list[str] = []

    def create(i: int) -> None:
        try:
            jobstore.create(_job(f"j{i}"), max_open_items=5)
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 5
    assert jobstore.open_items("t") == 5 and jobstore.open_items("other") == 0

    def finish(rec: JobRecord) -> None:
        for item in rec.items:
            item.status = "protected"
        rec.settle(60)

    jobstore.update("old", finish)
    assert jobstore.open_items("t") == 3
    jobstore.create(_job("after", photos=2), max_open_items=5)
    jobstore.create(_job("elsewhere", tenant="t:x", photos=5), max_open_items=5)
    with pytest.raises(QuotaExceeded):
        jobstore.create(_job("over"), max_open_items=5)


def test_steps_past_the_limit_are_refused(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, max_steps=50)) as c:
        r = submit(c, [("a.png", png())], data={"steps": "51"})
        assert r.status_code == 422 and err(r) == "steps_over_limit"
        assert r.json()["error"]["details"] == {"field": "steps", "limit": 50}
        assert submit(c, [("a.png", png())], data={"steps": "50"}).status_code == 202


def test_a_photo_needing_too_many_steps_fails_clearly(tmp_path: Path) -> None:
    def many_faces(data: bytes, filename: str, options: Any, progress: Any) -> Any:
        from facecloak.contract.options import ItemOutcome

        faces = 40 if "crowd" in filename else 2
        progress(1, faces * 100)  # protect counts attack steps over all faces
        return ItemOutcome(filename=filename, status="protected", faces=faces, output=data)

    s = settings(tmp_path, max_steps_per_photo=1000)
    app = create_app(s, handlers={"protect": many_faces}, background=False)
    with TestClient(app) as c:
        job = submit(c, [("crowd.png", png()), ("pair.png", png())]).json()
        done = wait_job(c, job["id"], A, timeout=30)
        crowd, pair = done["items"]
        assert crowd["status"] == "failed" and crowd["error"]["code"] == "too_many_steps"
        assert "4000" in crowd["error"]["message"] and "1000" in crowd["error"]["message"]
        assert pair["status"] == "protected" and done["status"] == "succeeded"


# 4. verify on its own pool ---------------------------------------------------------------------


def test_slow_verifies_do_not_starve_the_other_routes(tmp_path: Path) -> None:
    """More slow verifies than the server's shared threadpool has threads (40): GET /v1/jobs
    must answer while every admitted verify is still running, and the rest get 503."""
    release, entered, lock = threading.Event(), [0], threading.Lock()

    def slow(original: bytes, protected: bytes, models: Any) -> Any:
        with lock:
            entered[0] += 1
        release.wait(60)
        return fake_verify(original, protected, models)

    app = make_app(tmp_path, verifier=slow, verify_concurrency=3, verify_timeout_seconds=60)
    answers: list[httpx.Response] = []
    with served(app) as port:
        url = f"http://127.0.0.1:{port}"

        def post() -> None:
            files = [("original", ("a.png", png())), ("protected", ("b.png", png()))]
            answers.append(httpx.post(f"{url}/v1/verify", headers=A, files=files, timeout=90))

        senders = [threading.Thread(target=post) for _ in range(44)]
        try:
            for th in senders:
                th.start()
            deadline = time.monotonic() + 60
            while entered[0] + len(answers) < 44 and time.monotonic() < deadline:
                time.sleep(0.05)  # waiting for a state, not measuring time
            assert entered[0] == 3 and len(answers) == 41, (entered, len(answers))
            r = httpx.get(f"{url}/v1/jobs", headers=A, timeout=30)
            assert r.status_code == 200
            assert entered[0] == 3 and not release.is_set()  # the verifies are still running
        finally:
            release.set()
            for th in senders:
                th.join(90)
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 3 + [503] * 41
    busy = next(a for a in answers if a.status_code == 503)
    assert err(busy) == "verify_busy" and busy.headers["Retry-After"]
    assert list((tmp_path / "blobs").rglob("*.png")) == []


def test_a_verify_does_not_wait_behind_running_photos(tmp_path: Path) -> None:
    release = threading.Event()
    s = settings(tmp_path, embedded_workers=1, verify_timeout_seconds=20)  # < the 30 s hold
    app = create_app(s, handlers={"protect": _held(release)}, verifier=fake_verify)
    with TestClient(app) as c:
        job = submit(c, [("a.png", png())]).json()  # holds the only job thread
        files = [("original", ("a.png", png())), ("protected", ("b.png", png()))]
        try:
            r = c.post("/v1/verify", headers=A, files=files)
            assert r.status_code == 200 and not release.is_set()
        finally:
            release.set()
        wait_job(c, job["id"], A)
