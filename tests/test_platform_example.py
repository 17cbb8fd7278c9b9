"""The platform integration example (``scripts/platform_example.py``) runs end to end:
upload, FaceCloak job with a webhook, signature check (a forged one refused), download,
publish, verdict. Its pieces are also checked on their own."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from facecloak.client import item_fraction, progress_fraction
from facecloak.contract.webhooks import sign

from .helpers import REPO

SCRIPT = REPO / "scripts" / "platform_example.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("platform_example", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class _FakeFaceCloak:
    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit(self, photos: Any, options: Any, callback_url: str) -> dict[str, Any]:
        self.submitted.append({"photos": photos, "options": options, "callback": callback_url})
        return {"id": "job-1"}

    def download(self, job_id: str, item: int) -> bytes:
        return b"PROTECTED"


def _job(status: str = "succeeded", matched: bool = False) -> dict[str, Any]:
    checks = {"saved": {"matched": matched}, "jpeg75": {"matched": False}}
    report = {"verification": {"faces": [{"models": {"facenet": checks}}]}}
    item = {"index": 0, "status": "protected", "report": report, "result_url": "/r"}
    return {"id": "job-1", "status": status, "items": [item]}


def test_webhook_signature_decides_and_the_verdict_is_in_words() -> None:
    example = _example()
    fake = _FakeFaceCloak()
    platform = example.Platform(fake, "s3cret", "http://127.0.0.1:1/hooks/facecloak", {})
    photo = platform.upload("me.jpg", b"original")
    assert photo.status == "pending" and fake.submitted[0]["callback"].endswith("/facecloak")
    body = json.dumps(_job()).encode()
    assert platform.on_webhook(body, _signed("wrong", body)) == 401
    stale = {**_signed("s3cret", body, at=int(time.time()) - 3600)}
    assert platform.on_webhook(body, stale) == 401  # a replayed old delivery
    forged = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,00"}
    assert platform.on_webhook(body, forged) == 401
    assert photo.status == "pending" and not photo.published.is_set()
    rotated = _signed("s3cret", body)  # a key rotation: several signatures, one of them ours
    t = int(rotated["Webhook-Timestamp"])
    rotated["Webhook-Signature"] = sign(["old", "s3cret"], "msg_1", t, body)
    assert platform.on_webhook(body, rotated) == 204
    assert photo.status == "published" and photo.data == b"PROTECTED"
    assert photo.verdict == ["FaceNet no longer recognises face 1"]
    assert example.verdict_lines(_job(matched=True)["items"][0]["report"]) == [
        "FaceNet still recognises face 1"
    ]


def _signed(secret: str, body: bytes, at: int | None = None) -> dict[str, str]:
    t = int(time.time()) if at is None else at
    return {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(t),
        "Webhook-Signature": sign(secret, "msg_1", t, body),
    }


def test_client_progress_fraction_reads_item_progress() -> None:
    running = {"status": "running", "progress": {"done": 15, "total": 60, "unit": "steps"}}
    assert item_fraction(running) == 0.25
    assert item_fraction({"status": "queued", "progress": {"done": 0, "total": 0}}) == 0.0
    assert item_fraction({"status": "failed", "progress": {"done": 3, "total": 60}}) == 1.0
    job = {"items": [running, {"status": "protected", "progress": {"done": 60, "total": 60}}]}
    assert progress_fraction(job) == 0.625
    assert progress_fraction({"items": []}) == 0.0


@pytest.mark.slow
def test_platform_example_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "published.png"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--strength", "high", "--out", str(out), "--timeout", "600"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("user uploaded astronaut.png: photo p1 pending") for line in lines)
    assert "forged webhook refused: HTTP 401" in lines
    assert "webhook received, signature ok: photo p1 published" in lines
    verdicts = [line for line in lines if line.startswith("  verdict: ")]
    assert verdicts and all("no longer recognises" in v for v in verdicts), run.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
