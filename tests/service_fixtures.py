"""Helpers shared by the service tests: servers, photos, fast stand-in handlers and verifier.

Fakes are injected through the public API (``create_app(handlers=..., verifier=...)``,
``workers.tasks.Worker``), never by patching the runner.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from PIL import Image
from pydantic import BaseModel

from facecloak.contract.kinds import Handler, ProgressFn
from facecloak.contract.options import ItemOutcome, JobError
from facecloak.contract.reports import Verification
from facecloak.settings import Settings
from tests.helpers import FACES as SHARED_FACES

REPO = Path(__file__).resolve().parents[1]
FACES = SHARED_FACES / "test"
FACE_PHOTO = FACES / "obama__examples_obama.jpg"
KEYS = "key-a:tenant-a,key-b:tenant-b"
A = {"X-API-Key": "key-a"}
B = {"X-API-Key": "key-b"}
METRICS_TOKEN = "m3trics"
METRICS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
KNOWN_MODELS = ("w600k_mbf", "sface", "facenet")
GPS_IFD = 0x8825


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 120, 90)) -> bytes:
    """A small synthetic PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def gps_of(data: bytes) -> dict[int, Any]:
    """The EXIF GPS IFD of an encoded photo (empty when it has none)."""
    with Image.open(io.BytesIO(data)) as im:
        return dict(im.getexif().get_ifd(GPS_IFD))


def gps_jpeg(path: Path) -> bytes:
    """The JPEG at ``path`` with a GPS position (Paris) in its EXIF, re-saved with its own
    quantisation tables and subsampling (checked: the result really carries the GPS IFD)."""
    with Image.open(path) as im:
        assert im.format == "JPEG", path
        exif = im.getexif()
        gps = exif.get_ifd(GPS_IFD)
        gps.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality="keep", exif=exif.tobytes())
    data = buf.getvalue()
    assert gps_of(data).get(1) == "N", "the test photo must carry GPS"
    return data


def settings(tmp: Path, **overrides: Any) -> Settings:
    """Embedded-mode settings in ``tmp`` with the two test tenants."""
    values: dict[str, Any] = {
        "data_dir": tmp,
        "api_keys": KEYS,
        "broker_url": None,
        "storage_url": None,
        "jobstore_url": None,
        "rate_limit_per_minute": 1000,
        "webhook_secret": "s3cret",
        "metrics_token": METRICS_TOKEN,
        "webhook_backoff_seconds": 0.1,
        "reaper_interval_seconds": 0.3,
    }
    values.update(overrides)
    return Settings(**values)


def fake_protect(delay: float = 0.05) -> Handler:
    """A stand-in protect handler: file names decide the outcome, output is tagged."""

    def run(data: bytes, filename: str, options: BaseModel, progress: ProgressFn) -> ItemOutcome:
        progress(0, 1)
        time.sleep(delay)
        if "noface" in filename:
            return ItemOutcome(
                filename=filename,
                status="no_face",
                error=JobError(code="no_face", message="no face"),
            )
        progress(1, 1)
        return ItemOutcome(
            filename=filename,
            status="protected",
            faces=1,
            output=b"PROTECTED:" + data,
            report={"faces": 1},
        )

    return run


def fake_handlers(delay: float = 0.05) -> dict[str, Handler]:
    """The handlers mapping with the stand-in protect handler."""
    return {"protect": fake_protect(delay)}


def fake_verify(original: bytes, protected: bytes, models: list[str] | None) -> Verification:
    """A stand-in verifier: a valid, empty report that records the sizes it was given."""
    return Verification(
        faces=[],
        matched_faces={"sizes": {"original": len(original), "protected": len(protected)}},
        psnr=None,
        ssim=1.0,
        conditions=["saved"],
        thresholds={m: None for m in models or []},
        seconds=0.0,
    )


def make_app(
    tmp: Path,
    delay: float = 0.05,
    background: bool = False,
    verifier: Any = fake_verify,
    **overrides: Any,
) -> FastAPI:
    """An embedded gateway in ``tmp`` running the stand-in handlers and verifier."""
    from service.app import create_app

    return create_app(
        settings(tmp, **overrides),
        handlers=fake_handlers(delay),
        verifier=verifier,
        known_models=lambda: KNOWN_MODELS,
        background=background,
    )


def submit(
    c: Any,
    files: list[tuple[str, bytes]],
    headers: dict[str, str] = A,
    data: dict[str, Any] | None = None,
) -> Any:
    """POST photos to ``/v1/protect`` as ``files`` parts."""
    parts = [("files", (name, body, "application/octet-stream")) for name, body in files]
    return c.post("/v1/protect", files=parts, data=data or {}, headers=headers)


def err(r: Any) -> str:
    """The error code of an error answer (asserting the one error shape)."""
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    code: str = body["error"]["code"]
    return code


def zip_of(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip of ``entries`` (name -> bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", 20)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(15)


def wait_http(url: str, timeout: float) -> None:
    """Poll until ``url`` answers anything below 500."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def wait_job(client: Any, job_id: str, headers: dict[str, str], timeout: float = 60) -> Any:
    """Poll ``GET /v1/jobs/{id}`` until the job ends; returns its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if body.get("status") in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish: {body}")


class RedisServer:
    """A throwaway ``redis-server`` on a free port (AOF on, so restarts keep data)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current environment plus ``extra`` (for gateway/worker subprocesses)."""
    env = dict(os.environ)
    env.setdefault("FACECLOAK_CACHE_DIR", os.environ.get("FACECLOAK_CACHE_DIR", ""))
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}
