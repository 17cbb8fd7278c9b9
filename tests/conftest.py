"""Fixtures shared by every test module: the test process's settings and model store."""

from __future__ import annotations

import pytest

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
