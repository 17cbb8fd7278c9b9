"""Embedded mode end to end: `serve` as a process, the real protect job on a real photo."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.service_fixtures import (
    FACE_PHOTO,
    KEYS,
    REPO,
    A,
    free_port,
    subprocess_env,
    wait_http,
    wait_job,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FACE_PHOTO.exists(), reason="shared face photos not present"),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("embedded")
    port = free_port()
    env = subprocess_env(FACECLOAK_API_KEYS=KEYS, FACECLOAK_DATA_DIR=str(tmp),
                         FACECLOAK_BROKER_URL="", FACECLOAK_STORAGE_URL="")
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.commands", "serve", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        print(Path(tmp / "serve.log").read_text()[-3000:])


def test_protect_a_real_photo(gateway: str) -> None:
    photo = FACE_PHOTO.read_bytes()
    with httpx.Client(base_url=gateway, timeout=60) as c:
        ready = c.get("/readyz").json()
        assert ready["mode"] == "embedded" and ready["checks"]["jobstore"] == "ok"
        r = c.post("/v1/protect", headers=A,
                   data={"steps": "2", "verify": "false", "eot_makeup": "false"},
                   files=[("files", ("obama.jpg", photo, "image/jpeg"))])
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["id"], A, timeout=240)
        assert job["status"] == "succeeded", job
        item = job["items"][0]
        assert item["status"] == "protected" and item["faces"] >= 1 and item["report"]
        assert job["progress"]["faces_done"] == job["progress"]["faces_total"] >= 1
        got = c.get(f"/v1/jobs/{job['id']}/result", headers=A)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        before, after = Image.open(io.BytesIO(photo)), Image.open(io.BytesIO(got.content))
        assert after.format == "JPEG" and after.size == before.size
        assert "exif" not in after.info or not after.getexif().get_ifd(0x8825)  # no GPS
        text = c.get("/metrics").text
        assert 'facecloak_jobs{status="succeeded"} 1.0' in text
