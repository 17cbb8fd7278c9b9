"""The gateway's contract in embedded mode, with a fast stand-in for the protect job."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from fastapi.testclient import TestClient

from facecloak.contract.reports import Verification
from facecloak.contract.webhooks import SIGNATURE_HEADER, verify_signature
from tests.service_fixtures import (
    METRICS,
    REPO,
    A,
    B,
    err,
    fake_verify,
    live_server,
    make_app,
    png,
    settings,
    submit,
    wait_job,
)

JPEG_NAME = "photo.png"


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path)) as c:
        yield c


def test_gateway_and_celery_glue_never_import_torch() -> None:
    code = (
        "import sys; from service.app import create_app; import service.server, "
        "service.openapi_dump; import workers.tasks, workers.celery_app, workers.handlers; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_single_photo_round_trip(client: TestClient) -> None:
    photo = png()
    r = submit(client, [(JPEG_NAME, photo)], data={"steps": "3", "verify": "false"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "succeeded")
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["options"]["steps"] == 3 and job["options"]["verify"] is False
    done = wait_job(client, job["id"], A)
    assert done["status"] == "succeeded"
    assert done["progress"] == {
        "faces_done": 1,
        "faces_total": 1,
        "photos_done": 1,
        "photos_total": 1,
    }
    assert done["finished_at"] and done["expires_at"]
    got = client.get(f"/v1/jobs/{job['id']}/result", headers=A)
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    assert got.content == b"PROTECTED:" + photo
    listing = client.get("/v1/jobs", headers=A).json()
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]
    assert client.get("/v1/jobs", headers=B).json()["jobs"] == []


def test_options_as_json_field(client: TestClient) -> None:
    r = submit(
        client, [(JPEG_NAME, png())], data={"options": json.dumps({"strength": "low", "seed": 7})}
    )
    assert r.status_code == 202
    assert r.json()["options"]["strength"] == "low" and r.json()["options"]["seed"] == 7


def test_batch_with_a_bad_photo_completes_the_others(client: TestClient) -> None:
    r = submit(
        client,
        [("a.png", png()), ("bad.png", b"not an image"), ("noface.png", png(color=(1, 2, 3)))],
    )
    assert r.status_code == 202
    done = wait_job(client, r.json()["id"], A)
    assert done["status"] == "succeeded"
    statuses = [(i["filename"], i["status"]) for i in done["items"]]
    assert statuses == [("a.png", "protected"), ("bad.png", "failed"), ("noface.png", "no_face")]
    assert done["items"][1]["error"]["code"] == "not_an_image"
    z = client.get(f"/v1/jobs/{done['id']}/result", headers=A)
    assert z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert sorted(names) == ["a.png", "manifest.json"]
    one = client.get(f"/v1/jobs/{done['id']}/result?item=2", headers=A)
    assert one.status_code == 409 and err(one) == "no_result"


def test_auth_and_tenants(client: TestClient) -> None:
    r = submit(client, [(JPEG_NAME, png())], headers={})
    assert r.status_code == 401 and err(r) == "missing_api_key"
    r = submit(client, [(JPEG_NAME, png())], headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and err(r) == "invalid_api_key"
    job_id = submit(client, [(JPEG_NAME, png())]).json()["id"]
    for method in ("get", "delete"):
        r = getattr(client, method)(f"/v1/jobs/{job_id}", headers=B)
        assert r.status_code == 404 and err(r) == "job_not_found"
    r = client.get(f"/v1/jobs/{job_id}/result", headers=B)
    assert r.status_code == 404
    assert client.get("/v1/jobs/job_unknown", headers=A).status_code == 404


def test_rate_limit(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, rate_limit_per_minute=2)) as c:
        codes = [submit(c, [(JPEG_NAME, png())]).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        r = submit(c, [(JPEG_NAME, png())])
        assert err(r) == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert submit(c, [(JPEG_NAME, png())], headers=B).status_code == 202


def test_idempotency(client: TestClient) -> None:
    key = {**A, "Idempotency-Key": "order-1"}
    first = submit(client, [(JPEG_NAME, png())], headers=key)
    again = submit(client, [(JPEG_NAME, png())], headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = submit(client, [(JPEG_NAME, png(color=(0, 0, 0)))], headers=key)
    assert other.status_code == 422 and err(other) == "idempotency_key_reused"
    # keys are per tenant
    b = submit(client, [(JPEG_NAME, png())], headers={**B, "Idempotency-Key": "order-1"})
    assert b.status_code == 202 and b.json()["id"] != first.json()["id"]


def test_concurrent_idempotent_submits_make_one_job(tmp_path: Path) -> None:
    with live_server(make_app(tmp_path)) as url:
        results: list[httpx.Response] = []

        def go() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                results.append(
                    submit(c, [(JPEG_NAME, png())], headers={**A, "Idempotency-Key": "same"})
                )

        threads = [threading.Thread(target=go) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [202] * 6
        assert len({r.json()["id"] for r in results}) == 1
        with httpx.Client(base_url=url) as c:
            assert len(c.get("/v1/jobs", headers=A).json()["jobs"]) == 1


def test_cancel_delete_and_expiry(tmp_path: Path) -> None:
    app = make_app(tmp_path, delay=0.5, result_ttl_seconds=1)
    with TestClient(app) as c:
        slow = submit(c, [("a.png", png()), ("b.png", png())]).json()
        r = c.delete(f"/v1/jobs/{slow['id']}", headers=A)
        assert r.status_code == 200 and r.json()["status"] == "canceled"
        time.sleep(1.2)
        items = c.get(f"/v1/jobs/{slow['id']}", headers=A).json()["items"]
        assert {i["status"] for i in items} <= {"canceled"}
        assert not list((tmp_path / "blobs" / "jobs" / slow["id"]).rglob("in/*"))

        job = submit(c, [("c.png", png())]).json()
        done = wait_job(c, job["id"], A)
        assert c.get(f"/v1/jobs/{done['id']}/result", headers=A).status_code == 200
        assert not (tmp_path / "blobs" / "jobs" / done["id"] / "in" / "0").exists()
        time.sleep(1.1)
        app.state.reaper.sweep()
        gone = c.get(f"/v1/jobs/{done['id']}/result", headers=A)
        assert gone.status_code == 410 and err(gone) == "result_expired"
        assert c.get(f"/v1/jobs/{done['id']}", headers=A).json()["result_expired"] is True
        assert not list((tmp_path / "blobs" / "jobs" / done["id"]).rglob("*"))

        job = submit(c, [("d.png", png())]).json()
        wait_job(c, job["id"], A)
        assert c.delete(f"/v1/jobs/{job['id']}", headers=A).status_code == 204
        assert c.get(f"/v1/jobs/{job['id']}", headers=A).status_code == 404


def test_dead_worker_item_is_retried_then_failed(tmp_path: Path) -> None:
    """A 'running' photo whose lease ran out goes back to the queue, then fails; never stuck."""
    app = make_app(tmp_path, lease_seconds=0.2, max_attempts=2)
    with TestClient(app) as c:
        st = app.state.fc
        job_id = submit(c, [("a.png", png())]).json()["id"]
        wait_job(c, job_id, A)
        from facecloak.contract.records import JobRecord

        def stuck(job: JobRecord) -> None:  # as if a worker died holding the photo
            job.status, job.finished_at, job.expires_at = "running", None, None
            item = job.items[0]
            item.status, item.worker, item.lease_until, item.attempts = "running", "x", 0.0, 2
            item.result_key = None

        st.ctx.store.update(job_id, stuck)
        app.state.reaper.sweep()
        job = c.get(f"/v1/jobs/{job_id}", headers=A).json()
        assert job["status"] == "failed" and job["items"][0]["error"]["code"] == "worker_lost"

        job_id = submit(c, [("b.png", png())]).json()["id"]
        wait_job(c, job_id, A)

        def stuck_once(job: JobRecord) -> None:
            stuck(job)
            job.items[0].attempts = 1

        st.ctx.store.update(job_id, stuck_once)
        st.ctx.storage.put(f"jobs/{job_id}/in/0", png())
        app.state.reaper.sweep()
        done = wait_job(c, job_id, A)
        assert done["status"] == "succeeded" and done["items"][0]["attempts"] == 2


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    fail_first = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first:
            _Hook.fail_first = False
            self.send_response(503)
        else:
            _Hook.received.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_signed_and_retried(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = make_app(tmp_path, webhook_allowed_hosts="127.0.0.1")  # a local receiver: listed
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        with TestClient(app) as client:
            job = submit(client, [(JPEG_NAME, png())], data={"callback_url": url}).json()
            wait_job(client, job["id"], A)
            deadline = time.monotonic() + 10
            while not _Hook.received and time.monotonic() < deadline:
                time.sleep(0.05)
        headers, body = _Hook.received[0]
        assert json.loads(body)["id"] == job["id"]
        assert json.loads(body)["status"] == "succeeded"
        assert headers["webhook-id"] == f"msg_{job['id']}"
        assert headers[SIGNATURE_HEADER].startswith("v1,")
        assert verify_signature("s3cret", headers, body)
        assert not verify_signature("wrong", headers, body)
    finally:
        server.shutdown()


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert set(ready.json()["checks"]) >= {"jobstore", "storage", "executor"}
    submit(client, [(JPEG_NAME, png())])
    text = client.get("/metrics", headers=METRICS).text
    for name in (
        "facecloak_jobs{",
        "facecloak_queue_depth{",
        "facecloak_seconds_per_face",
        "facecloak_http_requests_total{",
    ):
        assert name in text
    r = client.get("/nope")
    assert r.status_code == 404 and err(r) == "not_found"


def test_verify_endpoint(tmp_path: Path) -> None:
    seen: list[tuple[bytes, bytes, Any]] = []

    def recording_verify(original: bytes, protected: bytes, models: Any) -> Verification:
        seen.append((original, protected, models))
        return fake_verify(original, protected, models)

    with TestClient(make_app(tmp_path, verifier=recording_verify)) as client:
        _check_verify(client, seen)


def _check_verify(client: TestClient, seen: list[tuple[bytes, bytes, Any]]) -> None:
    a, b = png(), png(color=(0, 0, 0))
    r = client.post(
        "/v1/verify",
        headers=A,
        data={"models": "w600k_mbf"},
        files=[("original", ("a.png", a)), ("protected", ("b.png", b))],
    )
    assert r.status_code == 200, r.text
    assert Verification.model_validate(r.json()).thresholds == {"w600k_mbf": None}
    assert seen == [(a, b, ["w600k_mbf"])]
    r = client.post(
        "/v1/verify",
        headers=A,
        data={"models": "nope"},
        files=[("original", ("a.png", a)), ("protected", ("b.png", b))],
    )
    assert r.status_code == 422 and err(r) == "unknown_model"
    r = client.post("/v1/verify", headers=A, files=[("original", ("a.png", a))])
    assert r.status_code == 422 and err(r) == "missing_file"
    r = client.post(
        "/v1/verify",
        headers=A,
        files=[("original", ("a.png", a)), ("protected", ("b.txt", b"text"))],
    )
    assert r.status_code == 415 and err(r) == "not_an_image"


def test_jobs_accepted_before_a_restart_still_run(tmp_path: Path) -> None:
    from facecloak.contract.context import Context
    from facecloak.contract.records import ItemRecord, JobRecord
    from facecloak.contract.runner import original_key

    ctx = Context.from_settings(settings(tmp_path))
    ctx.storage.put(original_key("job_old", 0), png())
    ctx.store.create(
        JobRecord(
            id="job_old",
            tenant="tenant-a",
            items=[
                ItemRecord(
                    index=0,
                    filename="a.png",
                    media_type="image/png",
                    original_key=original_key("job_old", 0),
                )
            ],
        )
    )
    with TestClient(make_app(tmp_path)) as c:
        assert wait_job(c, "job_old", A)["status"] == "succeeded"


def test_python_client(tmp_path: Path) -> None:
    from facecloak.client import Client, FaceCloakError

    with live_server(make_app(tmp_path)) as url, Client(url, api_key="key-a") as fc:
        photo = tmp_path / "me.png"
        photo.write_bytes(png())
        job = fc.protect([photo], tmp_path / "out", options={"steps": 2})
        assert job["status"] == "succeeded"
        assert (tmp_path / "out" / "me.png").read_bytes() == b"PROTECTED:" + png()
        with pytest.raises(FaceCloakError) as info:
            fc.submit([("x.png", b"nope")])
        assert info.value.status == 415 and info.value.code == "not_an_image"
        with pytest.raises(FaceCloakError) as info:
            fc.job("job_missing")
        assert info.value.code == "job_not_found"


def test_broker_down_at_submit_is_dispatched_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path)
    with TestClient(app) as c:
        dispatcher = app.state.fc.dispatcher
        real = dispatcher.enqueue
        calls: list[int] = []

        def flaky(job_id: str, index: int, kind: str) -> None:
            assert kind == "protect"
            calls.append(index)
            if len(calls) == 1:
                raise ConnectionError("broker down")
            real(job_id, index, kind)

        monkeypatch.setattr(dispatcher, "enqueue", flaky)
        r = submit(c, [("a.png", png()), ("b.png", png(color=(5, 5, 5)))])
        assert r.status_code == 202
        time.sleep(0.3)
        assert c.get(f"/v1/jobs/{r.json()['id']}", headers=A).json()["status"] == "queued"
        app.state.reaper.sweep()
        assert wait_job(c, r.json()["id"], A)["status"] == "succeeded"
        assert calls == [0, 0, 1]
