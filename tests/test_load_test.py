"""``scripts/load_test.py`` counts protected photos apart from ``no_face`` and failed ones."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

from facecloak.contract.options import ItemOutcome, JobError
from service.app import create_app
from tests.helpers import REPO
from tests.service_fixtures import live_server, settings


def load_test() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_test", REPO / "scripts" / "load_test.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def by_name(data: bytes, filename: str, options: Any, progress: Any) -> ItemOutcome:
    """Protects (returning the photo itself) unless the file name says otherwise."""
    if "noface" in filename:
        error = JobError(code="no_face", message="no face")
        return ItemOutcome(filename=filename, status="no_face", error=error)
    if "bad" in filename:
        error = JobError(code="too_many_faces", message="crowd")
        return ItemOutcome(filename=filename, status="failed", error=error)
    return ItemOutcome(filename=filename, status="protected", faces=1, output=data)


def test_outcomes_are_counted_apart(tmp_path: Path) -> None:
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("a.png", "bad.png", "noface.png"):
        Image.new("RGB", (64, 48), (200, 120, 90)).save(faces / name)
    (faces / "notes.txt").write_text("not a photo")
    app = create_app(settings(tmp_path / "gw"), handlers={"protect": by_name}, background=False)
    out = tmp_path / "load.json"
    with live_server(app) as url:
        argv = ["--url", url, "--jobs", "6", "--clients", "2", "--faces", str(faces)]
        assert load_test().main([*argv, "--option", "steps=3", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["accepted"] == 6 and summary["lost"] == 0 and summary["distinct_photos"] == 3
    assert summary["photos"] == {
        "protected": 2,
        "results_ok": 2,
        "no_face": 2,
        "failed": 2,
        "canceled": 0,
        "failed_codes": {"too_many_faces": 2},
    }
    assert summary["job_status"] == {"succeeded": 4, "failed": 2, "canceled": 0}
    assert summary["options"]["steps"] == "3" and summary["options"]["verify"] == "false"
