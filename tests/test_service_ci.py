"""``CI=true`` turns skips for missing required parts (redis-server, schemathesis) into
failures (tests/ci_required.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.service_fixtures import REPO

SAMPLE = """
import pytest

@pytest.mark.skipif(True, reason="redis-server not installed")
def test_marked():
    pass

def test_called():
    pytest.skip("schemathesis not installed")

def test_other_reason():
    pytest.skip("shared face photos not present")
"""


def _run(tmp: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider"]
    command += ["-p", "tests.ci_required", "--rootdir", str(tmp), str(tmp)]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=120)


def test_missing_required_parts_fail_under_ci(tmp_path: Path) -> None:
    run = _run(tmp_path, "true")
    assert run.returncode == 1, run.stdout
    assert "redis-server is required when CI=true" in run.stdout
    assert "schemathesis is required when CI=true" in run.stdout
    assert "1 skipped" in run.stdout  # other reasons still skip


def test_they_skip_outside_ci(tmp_path: Path) -> None:
    for ci in (None, "false"):
        run = _run(tmp_path, ci)
        assert run.returncode == 0 and "3 skipped" in run.stdout, run.stdout
