"""Fixtures shared by every test module: the test process's settings and model store, and a
fresh job store on each backend."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from facecloak.contract.store import JobStore, SQLiteJobStore
from facecloak.settings import Settings
from models.registry import ModelStore
from tests.ci_required import pytest_runtest_makereport  # noqa: F401  (CI=true: no silent skips)


def store_for(settings: Settings) -> ModelStore:
    """The model store a process with ``settings`` uses."""
    return ModelStore(settings.cache_dir, settings.model_dir, settings.allow_download)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings as the test process's environment gives them (built once, like an entry point)."""
    return Settings()


@pytest.fixture(scope="session")
def model_store(settings: Settings) -> ModelStore:
    """The model store of the test process (models fetched by ``scripts/setup``)."""
    return store_for(settings)


@pytest.fixture(params=["sqlite", "redis"])
def jobstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A fresh job store: SQLite, then Redis (skipped without ``redis-server``)."""
    if request.param == "sqlite":
        yield SQLiteJobStore(tmp_path / "jobs.sqlite3")
        return
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    from facecloak.contract.store_redis import RedisJobStore
    from tests.service_fixtures import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    try:
        yield RedisJobStore(server.url)
    finally:
        server.stop()
