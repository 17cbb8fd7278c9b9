"""What the gateway and the workers share at run time: settings, blob storage, job store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facecloak.contract.storage import Storage, open_storage
from facecloak.contract.store import JobStore, open_jobstore
from facecloak.settings import Settings


@dataclass
class Context:
    """Settings, blob storage and the job store of one process."""

    settings: Settings
    storage: Storage
    store: JobStore

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        """Open storage and job store as the settings say."""
        storage = open_storage(
            settings.storage_url, Path(settings.data_dir) / "blobs", settings.s3_endpoint_url
        )
        redis_url = settings.jobstore_url or settings.broker_url
        store = open_jobstore(redis_url, Path(settings.data_dir) / "jobs.sqlite3")
        return cls(settings, storage, store)
