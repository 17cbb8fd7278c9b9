"""Schema-based fuzzing of the gateway (schemathesis against openapi.yaml): never a 5xx."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.service_fixtures import METRICS_TOKEN, REPO, live_server, make_app

pytestmark = pytest.mark.skipif(
    shutil.which("schemathesis") is None, reason="schemathesis not installed"
)


def test_no_server_errors(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        delay=0.0,
        background=True,
        rate_limit_per_minute=100_000,
        webhook_allowed_hosts="127.0.0.1",
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
                "-H",
                f"Authorization: Bearer {METRICS_TOKEN}",  # /metrics is the operator's
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
