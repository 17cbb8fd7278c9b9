"""Schema-based fuzzing of the gateway (schemathesis against openapi.yaml): never a 5xx."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import facecloak.contract.runner as runner
from service.app import create_app
from tests.service_fixtures import REPO, fake_protect, live_server, settings

pytestmark = pytest.mark.skipif(
    shutil.which("schemathesis") is None, reason="schemathesis not installed"
)


def test_no_server_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_verify(original: bytes, protected: bytes, models: Any) -> dict[str, Any]:
        return {"faces": [], "models": models or []}

    monkeypatch.setattr(runner, "_protect", fake_protect(0.0))
    monkeypatch.setattr(runner, "_verify", fake_verify)
    app = create_app(
        settings(tmp_path, rate_limit_per_minute=100_000, webhook_allowed_hosts="127.0.0.1")
    )
    with live_server(app) as url:
        proc = subprocess.run(
            [
                "schemathesis",
                "run",
                str(REPO / "openapi.yaml"),
                "--url",
                url,
                "-H",
                "X-API-Key: key-a",
                "-c",
                "not_a_server_error",
                "-n",
                "15",
                "--generation-deterministic",
                "--request-timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
