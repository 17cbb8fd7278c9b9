"""Blob storage for uploads and results: a local directory or S3-compatible object storage.

Keys are relative POSIX paths (``jobs/<id>/in/0``). Writes are atomic (a reader sees the
old blob or the new one, never half of one), so a task that runs twice cannot corrupt a
result. Open one with :func:`open_storage` from ``FACECLOAK_STORAGE_URL``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class BlobNotFound(KeyError):
    """No blob under that key."""


class Storage(Protocol):
    """What the service needs from blob storage."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous blob."""

    def get(self, key: str) -> bytes:
        """The blob under ``key``; :class:`BlobNotFound` if there is none."""

    def delete(self, key: str) -> None:
        """Remove one blob (no error if it is gone)."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob whose key starts with ``prefix``."""

    def check(self) -> None:
        """Raise if the storage cannot be written and read back."""


def _check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def _probe(store: Storage) -> None:
    key = f"probe/{uuid.uuid4().hex}"
    store.put(key, b"ok")
    try:
        if store.get(key) != b"ok":
            raise OSError("storage returned different bytes")
    finally:
        store.delete(key)


class LocalStorage:
    """Blobs as files under one directory (one machine, or a shared filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Write to a temporary file, then rename over the target (atomic on POSIX)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        """Read the file."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def delete(self, key: str) -> None:
        """Unlink the file."""
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Remove the directory ``prefix`` names."""
        shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)

    def check(self) -> None:
        """Write, read back and delete a probe file."""
        _probe(self)


class S3Storage:
    """Blobs as objects in an S3-compatible bucket (AWS, MinIO, ...), under a key prefix."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3  # imported here: local-only installs need no boto3 at import time

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """PUT the object (S3 PUTs are atomic)."""
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        """GET the object."""
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey as exc:
            raise BlobNotFound(key) from exc
        body: bytes = obj["Body"].read()
        return body

    def delete(self, key: str) -> None:
        """DELETE the object."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        """List and delete the objects under ``prefix``, 1000 at a time."""
        paginator = self.client.get_paginator("list_objects_v2")
        full = self.prefix + _check_key(prefix.rstrip("/")) + "/"
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    def check(self) -> None:
        """Write, read back and delete a probe object."""
        _probe(self)


def open_storage(url: str | None, default_dir: Path, endpoint_url: str | None = None) -> Storage:
    """Storage for ``url``: ``s3://bucket/prefix``, a directory path, or ``default_dir``."""
    if url and url.startswith("s3://"):
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket")
        return S3Storage(parsed.netloc, parsed.path, endpoint_url)
    if url and url.startswith("file://"):
        return LocalStorage(Path(urlparse(url).path))
    return LocalStorage(Path(url) if url else default_dir)
