"""``POST /v1/backdoor-scans``: a real scan through the job machinery, and refusals."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from tests.backdoor_fixtures import clean_onnx, zoo_dir  # noqa: F401 (fixtures)
from tests.service_fixtures import A, settings, wait_job
from workers.jobs.backdoor.handler import backdoor_scan_handler

OPTIONS = json.dumps({"iterations": 5, "cleanse": False, "noise": 4})


def test_a_scan_job_runs_and_returns_its_report(tmp_path: Path, clean_onnx: bytes) -> None:  # noqa: F811
    app = create_app(
        settings(tmp_path), handlers={"backdoor_scan": backdoor_scan_handler()}, background=False
    )
    with TestClient(app) as c:
        r = c.post(
            "/v1/backdoor-scans",
            headers=A,
            files={"model": ("m.onnx", clean_onnx)},
            data={"options": OPTIONS, "threshold": "50"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["kind"] == "backdoor_scan"
        done = wait_job(c, r.json()["id"], A)
        assert done["status"] == "succeeded", done
        report = done["items"][0]["report"]
        assert report["suspicious"] is False and report["threshold"] == 50
        result = c.get(f"/v1/jobs/{done['id']}/result", headers=A)
        with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
            assert json.loads(archive.read("report.json"))["scores"] == report["scores"]


def test_bad_submissions_are_refused(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path), handlers={}, background=False)
    with TestClient(app) as c:

        def post(files: dict, data: dict | None = None) -> tuple[int, str]:
            r = c.post("/v1/backdoor-scans", headers=A, files=files, data=data or {})
            return r.status_code, r.json()["error"]["code"]

        assert post({"reference": ("r.onnx", b"x")}) == (422, "missing_model")
        assert post({"model": ("m.onnx", b"PK\x03\x04zip")}) == (415, "unsupported_format")
        assert post({"model": ("m.onnx", b"x"), "samples": ("s.txt", b"abc")}) == (
            415,
            "unsupported_format",
        )
        assert post({"model": ("m.onnx", b"x")}, {"eps": "7"}) == (422, "invalid_options")
        assert post({"model": ("m.onnx", b"x")}, {"nope": "1"}) == (422, "unknown_field")
