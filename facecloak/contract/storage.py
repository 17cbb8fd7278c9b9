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
        """Raise if the storage cannot be reached (reads only, writes nothing)."""

    def stale(self, prefix: str, before: float) -> list[str]:
        """The folders directly under ``prefix`` whose newest blob is older than ``before``."""


def _check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """Blobs as files under one directory (one machine, or a shared filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)  # uploads are face photos: owner only

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
        """The root is a folder this process may write to."""
        if not (self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)):
            raise OSError("the storage folder is missing or not writable")

    def stale(self, prefix: str, before: float) -> list[str]:
        """Sub-folders of ``prefix`` with no file modified at or after ``before``."""
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        out = []
        for child in base.iterdir():
            files = [child] if child.is_file() else [p for p in child.rglob("*") if p.is_file()]
            newest = max((_mtime(p) for p in files), default=_mtime(child))
            if newest < before:
                out.append(f"{prefix.rstrip('/')}/{child.name}")
        return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


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
        """HEAD the bucket."""
        self.client.head_bucket(Bucket=self.bucket)

    def stale(self, prefix: str, before: float) -> list[str]:
        """Folders under ``prefix`` whose objects were all last modified before ``before``."""
        full = self.prefix + _check_key(prefix.rstrip("/")) + "/"
        newest: dict[str, float] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(full) :].split("/", 1)[0]
                t = obj["LastModified"].timestamp()
                newest[name] = max(newest.get(name, 0.0), t)
        return [f"{prefix.rstrip('/')}/{n}" for n, t in newest.items() if t < before]


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
