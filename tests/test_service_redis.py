"""Distributed mode over HTTP: a real redis-server, a gateway process, Celery worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from facecloak.images import decode_image
from facecloak.settings import Settings
from models.registry import ModelStore
from tests.helpers import DEV, runtime_for
from tests.protection_checks import (
    HELD_OUT,
    SURROGATES,
    assert_face_changed,
    assert_not_recognised,
    assert_report_protects,
)
from tests.service_fixtures import (
    FACE_PHOTO,
    KEYS,
    METRICS,
    METRICS_TOKEN,
    REPO,
    A,
    RedisServer,
    free_port,
    gps_jpeg,
    gps_of,
    png,
    subprocess_env,
    wait_http,
)

if TYPE_CHECKING:
    from workers.jobs.runtime import Runtime

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]


class Stack:
    """Redis + gateway + workers, all real processes on loopback."""

    def __init__(self, tmp: Path, fake_delay: float | None) -> None:
        self.tmp = tmp
        self.redis = RedisServer(tmp)
        self.fake_delay = fake_delay
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        extra = {
            "FACECLOAK_BROKER_URL": self.redis.url,
            "FACECLOAK_STORAGE_URL": str(self.tmp / "blobs"),
            "FACECLOAK_DATA_DIR": str(self.tmp / "data"),
            "FACECLOAK_API_KEYS": KEYS,
            "FACECLOAK_METRICS_TOKEN": METRICS_TOKEN,
            "FACECLOAK_LEASE_SECONDS": "5",  # real attacks share 2 cores with the heartbeat
            "FACECLOAK_REAPER_INTERVAL_SECONDS": "0.5",
            "FACECLOAK_MAX_ATTEMPTS": "3",
            "FACECLOAK_RATE_LIMIT_PER_MINUTE": "10000",
            # a distributed gateway needs keys to start, one per tenant (no shared key)
            "FACECLOAK_WEBHOOK_SECRETS": "tenant-a:s3cret-a,tenant-b:s3cret-b",
        }
        if self.fake_delay is not None:
            extra["FC_FAKE_DELAY"] = str(self.fake_delay)
            extra["FACECLOAK_WARM_UP"] = "false"
        return subprocess_env(**extra)

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.tmp / log).open("ab")
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self.redis.start()
        self._spawn(
            [
                sys.executable,
                "-m",
                "facecloak.cli",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            "gateway.log",
        )
        wait_http(self.url + "/healthz", 60)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        if self.fake_delay is not None:
            cmd = [sys.executable, "tests/fake_worker.py"]
        else:
            cmd = [sys.executable, "-m", "facecloak.cli", "worker"]
        proc = self._spawn(
            [
                *cmd,
                "--queues",
                "gpu,cpu",
                "--name",
                f"{name}@%h",
                "--log-level",
                "WARNING",
            ],
            f"{name}.log",
        )
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.redis.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.tmp.glob("*.log"))


@pytest.fixture()
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = Stack(tmp_path, getattr(request, "param", None))
    try:
        s.start()  # inside: a gateway that never comes up is stopped too
        yield s
    finally:
        s.stop()


def poll(c: httpx.Client, job_id: str, until: Any, timeout: float) -> dict[str, Any]:
    """GET the job until ``until(job)``; tolerates 503 while Redis restarts."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            r = c.get(f"/v1/jobs/{job_id}", headers=A)
            if r.status_code == 200:
                body = r.json()
                if until(body):
                    return body
            else:
                assert r.status_code == 503, r.text
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id}: {body}")


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "canceled")


def submit(c: httpx.Client, files: list[tuple[str, bytes]], **data: str) -> dict[str, Any]:
    r = c.post(
        "/v1/protect",
        headers=A,
        data=data,
        files=[("files", (n, b, "application/octet-stream")) for n, b in files],
    )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.slow
@pytest.mark.skipif(not FACE_PHOTO.exists(), reason="shared face photos not present")
def test_real_job_through_the_queue(
    stack: Stack, settings: Settings, model_store: ModelStore
) -> None:
    """The real job on a Celery worker, default preset, verification on: the photo comes back
    protected (its report and its own pixels say so) and without its GPS position."""
    stack.start_worker("w1")
    photo = gps_jpeg(FACE_PHOTO)  # asserts that the upload carries GPS
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        assert c.get("/readyz").json()["checks"]["broker"] == "ok"
        job = submit(c, [("obama.jpg", photo)], verify="true", eval_models=",".join(HELD_OUT))
        done = poll(c, job["id"], finished, 300)
        assert done["status"] == "succeeded", (done, stack.logs())
        item = done["items"][0]
        assert item["status"] == "protected" and item["faces"] == 1, item
        got = c.get(f"/v1/jobs/{job['id']}/result", headers=A)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        assert 'facecloak_queue_depth{queue="gpu"}' in c.get("/metrics", headers=METRICS).text
    assert got.content[:3] == b"\xff\xd8\xff" and not gps_of(got.content)
    original = decode_image(photo).rgb
    size = (original.shape[1], original.shape[0])
    assert_report_protects(item["report"], SURROGATES, HELD_OUT, size)
    runtime = runtime_for(settings, model_store)
    change = assert_face_changed(runtime, photo, got.content)
    assert_not_recognised(runtime, change, [*SURROGATES, *HELD_OUT])


@pytest.mark.parametrize("stack", [0.05], indirect=True)
def test_batch_fans_out_across_workers(stack: Stack) -> None:
    stack.start_worker("w1")
    stack.start_worker("w2")
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        job = submit(c, [(f"{i}.png", png(color=(i, i, i))) for i in range(6)])
        done = poll(c, job["id"], finished, 60)
        assert done["status"] == "succeeded", stack.logs()
        assert done["progress"]["photos_done"] == 6
        assert all(i["status"] == "protected" for i in done["items"])
        a, b = png(), png(color=(10, 10, 10))  # same size: sizes must match
        r = c.post(
            "/v1/verify", headers=A, files=[("original", ("a.png", a)), ("protected", ("b.png", b))]
        )
        assert r.status_code == 200, r.text
        assert r.json()["matched_faces"]["sizes"] == {"original": len(a), "protected": len(b)}


@pytest.mark.parametrize("stack", [6.0], indirect=True)
def test_killed_worker_job_completes_elsewhere(stack: Stack) -> None:
    doomed = stack.start_worker("doomed")
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        job = submit(c, [("a.png", png())])
        poll(c, job["id"], lambda j: j["items"][0]["status"] == "running", 60)
        stack.start_worker("rescuer")
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool die mid-photo
        done = poll(c, job["id"], finished, 60)
        assert done["status"] == "succeeded", stack.logs()
        assert done["items"][0]["attempts"] == 2


KILL_PHOTO = DEV / "img25.jpg"  # 400x400, one face: a short real attack
SHORT_OPTIONS = {"verify": "true", "eot_makeup": "false", "eval_models": ",".join(HELD_OUT)}
"""The default preset without makeup EOT: about 20 s of attack on KILL_PHOTO with one CPU
thread, and it protects it (a legacy ``low`` preset with 20 steps leaves w600k_mbf matching)."""


def mid_attack(job: dict[str, Any]) -> bool:
    item = job["items"][0]
    done, total = item["progress"]["done"], item["progress"]["total"]
    return bool(item["status"] == "running" and 0 < done < total / 2)


def assert_short_job_protected(
    stack: Stack, job_id: str, item: dict[str, Any], photo: bytes, result: bytes, runtime: Runtime
) -> None:
    """KILL_PHOTO came back protected with SHORT_OPTIONS, and only one result was stored."""
    out_dir = stack.tmp / "blobs" / "jobs" / job_id / "out"
    assert len(list(out_dir.iterdir())) == 1  # no second result file
    assert_report_protects(item["report"], SURROGATES, HELD_OUT, (400, 400))
    change = assert_face_changed(runtime, photo, result)
    assert_not_recognised(runtime, change, [*SURROGATES, *HELD_OUT])


@pytest.mark.slow
@pytest.mark.skipif(not KILL_PHOTO.exists(), reason="shared face photos not present")
def test_killed_worker_running_the_real_job_is_rescued(
    stack: Stack, settings: Settings, model_store: ModelStore
) -> None:
    """SIGKILL a real worker mid-attack: the photo is protected by another, on attempt 2."""
    doomed = stack.start_worker("doomed")
    photo = KILL_PHOTO.read_bytes()
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        job = submit(c, [("face.jpg", photo)], **SHORT_OPTIONS)
        poll(c, job["id"], mid_attack, 240)
        stack.start_worker("rescuer")
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool die mid-attack
        done = poll(c, job["id"], finished, 240)
        item = done["items"][0]
        assert done["status"] == "succeeded", (done, stack.logs())
        assert item["status"] == "protected" and item["attempts"] == 2, item
        got = c.get(f"/v1/jobs/{job['id']}/result", headers=A)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    runtime = runtime_for(settings, model_store)
    assert_short_job_protected(stack, job["id"], item, photo, got.content, runtime)


@pytest.mark.slow
@pytest.mark.skipif(not KILL_PHOTO.exists(), reason="shared face photos not present")
def test_redis_restart_while_the_real_job_attacks(
    stack: Stack, settings: Settings, model_store: ModelStore
) -> None:
    """Restart redis-server while a real worker is mid-attack: the photo still comes back
    protected, once."""
    stack.start_worker("w1")
    photo = KILL_PHOTO.read_bytes()
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        job = submit(c, [("face.jpg", photo)], **SHORT_OPTIONS)
        poll(c, job["id"], mid_attack, 240)
        stack.redis.restart(down_s=1.0)
        done = poll(c, job["id"], finished, 240)
        item = done["items"][0]
        assert done["status"] == "succeeded", (done, stack.logs())
        assert item["status"] == "protected", item
        got = c.get(f"/v1/jobs/{job['id']}/result", headers=A)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    runtime = runtime_for(settings, model_store)
    assert_short_job_protected(stack, job["id"], item, photo, got.content, runtime)


@pytest.mark.parametrize("stack", [3.0], indirect=True)
def test_redis_restart_mid_run(stack: Stack) -> None:
    """The same outage across a 2-photo batch (stand-in worker: fast)."""
    stack.start_worker("w1")
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        job = submit(c, [("a.png", png()), ("b.png", png(color=(1, 1, 1)))])
        poll(c, job["id"], lambda j: j["status"] == "running", 60)
        stack.redis.restart(down_s=1.0)
        done = poll(c, job["id"], finished, 90)
        assert done["status"] == "succeeded", stack.logs()
        assert [i["status"] for i in done["items"]] == ["protected", "protected"]
        assert c.get(f"/v1/jobs/{job['id']}/result", headers=A).status_code == 200
