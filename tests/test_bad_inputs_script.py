"""``scripts/bad_inputs.py`` against a live gateway: every class of bad input gets its
documented status and error code, and none a 5xx."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from facecloak.contract.captcha_pool import LocalCaptchaPool
from facecloak.contract.options import ItemOutcome, JobError
from facecloak.images import ImageError, decode_image
from service.app import create_app
from tests.helpers import REPO
from tests.service_fixtures import KNOWN_MODELS, fake_verify, live_server, settings
from workers.jobs.augment.handler import augment_handler
from workers.jobs.backdoor.handler import backdoor_scan_handler

MB = 1024 * 1024
LIMITS = {
    "max_upload_bytes": MB,
    "max_request_bytes": 3 * MB,
    "max_batch_photos": 5,
    "max_pixels": 4_000_000,
    "zip_max_entries": 50,
}


def bad_inputs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bad_inputs", REPO / "scripts" / "bad_inputs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decode_or_no_face(data: bytes, filename: str, options: Any, progress: Any) -> ItemOutcome:
    """Decodes the photo like the real job (so broken ones fail with its code); finds no face."""
    try:
        decode_image(data)
    except ImageError as exc:
        error = JobError(code=exc.code, message=exc.message)
        return ItemOutcome(filename=filename, status="failed", error=error)
    error = JobError(code="no_face", message="no face")
    return ItemOutcome(filename=filename, status="no_face", error=error)


def decoding_verifier(original: bytes, protected: bytes, models: list[str] | None) -> Any:
    """Decodes both photos like the real verifier, then reports nothing."""
    decode_image(original)
    decode_image(protected)
    return fake_verify(original, protected, models)


def test_every_bad_input_class_gets_its_code_and_none_a_5xx(tmp_path: Path) -> None:
    handlers = {
        "protect": decode_or_no_face,
        "backdoor_scan": backdoor_scan_handler(),
        "augment": augment_handler(),
    }
    app = create_app(
        settings(tmp_path / "gw", **LIMITS),
        handlers=handlers,
        verifier=decoding_verifier,
        known_models=lambda: KNOWN_MODELS,
        captcha_pool=LocalCaptchaPool(),
        background=False,
    )
    out = tmp_path / "bad.json"
    limits = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    with live_server(app) as url:
        argv = ["--url", url, "--api-key", "key-a", "--other-api-key", "key-b"]
        rc = bad_inputs().main([*argv, "--faces", str(tmp_path / "none"), *limits,
                                "--timeout", "60", "--out", str(out)])  # fmt: skip
    summary = json.loads(out.read_text())
    results = summary["results"]
    failed = [r for r in results if not r["passed"]]
    assert not failed, json.dumps(failed, indent=1)
    assert rc == 0 and summary["server_errors"] == 0 and summary["failed"] == []
    assert all(r["status"] is not None and r["status"] < 500 for r in results)
    assert all(r["code"] == r["expected_code"] for r in results)
    assert summary["classes"] >= 60 and summary["requests"] == len(results) >= 130
    routes = {r["route"] for r in results}
    for route in (
        "POST /v1/protect", "POST /v1/verify", "POST /v1/backdoor-scans",
        "POST /v1/augmentations", "POST /v1/captchas", "POST /v1/captchas/{id}/verify",
        "GET /v1/jobs", "GET /v1/jobs/{id}", "GET /v1/jobs/{id}/result",
        "DELETE /v1/jobs/{id}",
    ):  # fmt: skip
        assert route in routes, route
    names = {r["name"] for r in results}
    assert {"another tenant's job", "zip slip (../ entry)", "oversized file, chunked",
            "oversized request, chunked", "decompression bomb PNG"} <= names  # fmt: skip
    assert summary["jobs_created_and_deleted"] > 0
    store = app.state.fc.ctx.store
    assert store.for_tenant("tenant-a", limit=10) == [] == store.for_tenant("tenant-b", limit=10)
