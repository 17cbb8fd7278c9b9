"""Embedded mode end to end: `serve` as a process, the real protect job on a real photo."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from facecloak.settings import Settings
from models.registry import ModelStore
from tests.helpers import runtime_for
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
    free_port,
    gps_jpeg,
    gps_of,
    subprocess_env,
    wait_http,
    wait_job,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FACE_PHOTO.exists(), reason="shared face photos not present"),
]


def serve(tmp: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """``serve`` in embedded mode as a process, logging to ``tmp/serve.log``."""
    environ = subprocess_env(
        FACECLOAK_API_KEYS=KEYS,
        FACECLOAK_METRICS_TOKEN=METRICS_TOKEN,
        FACECLOAK_DATA_DIR=str(tmp),
        FACECLOAK_BROKER_URL="",
        FACECLOAK_STORAGE_URL="",
        **env,
    )
    log = (tmp / "serve.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "facecloak.cli", "serve", "--port", str(port)],
        cwd=REPO,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", 60)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("embedded")
    port = free_port()
    proc = serve(tmp, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        print(Path(tmp / "serve.log").read_text()[-3000:])


def test_protect_a_real_photo(gateway: str, settings: Settings, model_store: ModelStore) -> None:
    """The real job with the default preset and verification on: the photo comes back
    protected (its report and its own pixels say so) and without its GPS position."""
    photo = gps_jpeg(FACE_PHOTO)  # asserts that the upload carries GPS
    with httpx.Client(base_url=gateway, timeout=60) as c:
        ready = c.get("/readyz").json()
        assert ready["mode"] == "embedded" and ready["checks"]["jobstore"] == "ok"
        r = c.post(
            "/v1/protect",
            headers=A,
            data={"verify": "true", "eval_models": ",".join(HELD_OUT)},
            files=[("files", ("obama.jpg", photo, "image/jpeg"))],
        )
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["id"], A, timeout=300)
        assert job["status"] == "succeeded", job
        item = job["items"][0]
        assert item["status"] == "protected" and item["faces"] == 1, item
        assert job["progress"]["faces_done"] == job["progress"]["faces_total"] == 1
        got = c.get(f"/v1/jobs/{job['id']}/result", headers=A)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        text = c.get("/metrics", headers=METRICS).text
        assert 'facecloak_jobs{status="succeeded"} 1.0' in text
    before, after = Image.open(io.BytesIO(photo)), Image.open(io.BytesIO(got.content))
    assert after.format == "JPEG" and after.size == before.size
    assert not gps_of(got.content)
    assert_report_protects(item["report"], SURROGATES, HELD_OUT, before.size)
    runtime = runtime_for(settings, model_store)
    change = assert_face_changed(runtime, photo, got.content)
    assert_not_recognised(runtime, change, [*SURROGATES, *HELD_OUT])


def test_restart_mid_job_loses_nothing(tmp_path: Path) -> None:
    """Stop the gateway while a photo is being protected: after a restart the job completes."""
    port = free_port()
    env = {
        "FACECLOAK_LEASE_SECONDS": "3",
        "FACECLOAK_REAPER_INTERVAL_SECONDS": "0.5",
        "FACECLOAK_SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    proc = serve(tmp_path, port, **env)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post(
                "/v1/protect",
                headers=A,
                data={
                    "steps": "60",  # still running when the gateway stops
                    "verify": "false",
                    "eot_makeup": "false",
                    "eot_jpeg": "false",
                    "eot_rescale": "false",
                },
                files=[("files", ("obama.jpg", FACE_PHOTO.read_bytes(), "image/jpeg"))],
            )
            job_id = r.json()["id"]
            deadline = time.monotonic() + 120
            job_url = f"/v1/jobs/{job_id}"  # wait until the photo is analysed (total known)
            while c.get(job_url, headers=A).json()["items"][0]["progress"]["total"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        stop(proc)
        proc = serve(tmp_path, port, **env)
        with httpx.Client(base_url=url, timeout=60) as c:
            job = wait_job(c, job_id, A, timeout=240)
        assert job["status"] == "succeeded", job
        assert job["items"][0]["attempts"] == 2
    finally:
        stop(proc)
