"""Under ``CI=true`` a test skipped because a required part is missing fails instead.

Locally, tests that need ``redis-server`` or ``schemathesis`` skip when those are absent;
in CI such a skip would hide that the parts were never tested, so there the skip is
reported as a failure naming what is missing. ``tests/conftest.py`` installs the hook.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

REQUIRED_IN_CI = ("redis-server", "schemathesis")
"""Parts whose absence must fail a CI run; a skip reason that names one is turned into a
failure when ``CI`` is ``true``."""


def in_ci() -> bool:
    """Whether the environment says this is a CI run (``CI=true``, any case)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def _reason(report: pytest.TestReport) -> str:
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Turn a skip for a missing required part into a failure under ``CI=true``."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    missing = [name for name in REQUIRED_IN_CI if name in reason]
    if missing:
        report.outcome = "failed"
        report.longrepr = (
            f"{' and '.join(missing)} is required when CI=true, but the test was skipped: {reason}"
        )
