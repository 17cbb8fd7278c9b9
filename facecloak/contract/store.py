"""Job stores: where job records live. SQLite for embedded mode (here), Redis for distributed
mode (:mod:`facecloak.contract.store_redis`).

Every change is :meth:`JobStore.update`, an atomic read-modify-write: ``fn`` mutates the
record in place and may be called more than once (on a write conflict), so it must only
depend on the record it is given. Idempotency keys are reserved in the same atomic step
that creates the job, so two concurrent submits with one key make one job.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from facecloak.contract.records import JobRecord

OPEN_ITEM = frozenset({"queued", "running"})

Mutator = Callable[[JobRecord], None]


class QuotaExceeded(Exception):
    """A tenant's queued and running items plus a new job's would pass its quota."""

    def __init__(self, open_items: int, requested: int, limit: int) -> None:
        super().__init__(f"{open_items} + {requested} open items > {limit}")
        self.open_items, self.requested, self.limit = open_items, requested, limit


def open_items(jobs: Iterable[JobRecord]) -> int:
    """Items queued or running in ``jobs``."""
    return sum(1 for job in jobs if not job.done for item in job.items if item.status in OPEN_ITEM)


def check_quota(jobs: Iterable[JobRecord], job: JobRecord, limit: int | None) -> None:
    """Raise :class:`QuotaExceeded` if ``job`` would take its tenant (whose unfinished
    ``jobs`` these are) past ``limit`` open items (None or 0: no limit)."""
    if not limit:
        return
    have, requested = open_items(jobs), open_items([job])
    if have + requested > limit:
        raise QuotaExceeded(have, requested, limit)


class JobStore(Protocol):
    """What the gateway and the workers need from a job store."""

    def create(self, job: JobRecord, max_open_items: int | None = None) -> tuple[JobRecord, bool]:
        """Insert ``job``; if its tenant+idempotency key exists, return (that job, False).

        With ``max_open_items``, raise :class:`QuotaExceeded` instead when the tenant's
        queued and running items plus the job's would pass it (checked atomically).
        """

    def open_items(self, tenant: str) -> int:
        """The tenant's items queued or running."""

    def get(self, job_id: str) -> JobRecord | None:
        """The record, or None."""

    def update(self, job_id: str, fn: Mutator) -> JobRecord | None:
        """Apply ``fn`` atomically and return the new record (None if there is no such job)."""

    def delete(self, job_id: str) -> None:
        """Remove the record and its idempotency key."""

    def for_tenant(
        self, tenant: str, limit: int = 50, before: float | None = None
    ) -> list[JobRecord]:
        """A tenant's jobs, newest first, created before ``before``."""

    def active(self) -> list[JobRecord]:
        """Jobs not finished yet (for the lease sweep)."""

    def finished_before(self, t: float) -> list[JobRecord]:
        """Finished jobs whose ``sweep_at`` is before ``t`` (for the expiry sweep)."""

    def counts(self) -> dict[str, int]:
        """Number of jobs per status."""

    def add_stats(self, **values: float) -> None:
        """Add to named counters (faces, face_seconds, ...)."""

    def stats(self) -> dict[str, float]:
        """The named counters."""

    def webhooks_due(self, t: float) -> list[JobRecord]:
        """Per tenant, the job whose webhook is due earliest (at or before ``t``): one per
        tenant, so a tenant with many pending webhooks cannot crowd out the others."""

    def now(self) -> float:
        """The store's clock (seconds since the epoch): leases are set and compared on it, so
        hosts whose clocks disagree still agree on whose lease ran out."""

    def ping(self) -> None:
        """Raise if the store cannot be reached."""


class SQLiteJobStore:
    """One SQLite file, safe across threads of one process (embedded mode)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        _private_file(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS jobs (
              id TEXT PRIMARY KEY, tenant TEXT NOT NULL, status TEXT NOT NULL,
              created_at REAL NOT NULL, sweep_at REAL, body TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, created_at);
            CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
            CREATE INDEX IF NOT EXISTS jobs_sweep ON jobs (sweep_at);
            CREATE TABLE IF NOT EXISTS idem (
              tenant TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL,
              PRIMARY KEY (tenant, key));
            CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, value REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS outbox (
              job_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, due_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS outbox_due ON outbox (tenant, due_at);
            """
        )

    def _write(self, job: JobRecord, insert: bool = False) -> None:
        verb = "INSERT" if insert else "REPLACE"
        self._db.execute(
            f"{verb} INTO jobs (id, tenant, status, created_at, sweep_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job.id, job.tenant, job.status, job.created_at, job.sweep_at, job.model_dump_json()),
        )
        due = job.webhook_due
        if due is None:
            self._db.execute("DELETE FROM outbox WHERE job_id = ?", (job.id,))
        else:
            self._db.execute(
                "REPLACE INTO outbox (job_id, tenant, due_at) VALUES (?, ?, ?)",
                (job.id, job.tenant, due),
            )

    def _read(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None

    def create(self, job: JobRecord, max_open_items: int | None = None) -> tuple[JobRecord, bool]:
        """Insert, reserving the idempotency key and checking the quota in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if job.idempotency_key:
                    row = self._db.execute(
                        "SELECT job_id FROM idem WHERE tenant = ? AND key = ?",
                        (job.tenant, job.idempotency_key),
                    ).fetchone()
                    existing = self._read(row[0]) if row else None
                    if existing is not None:
                        self._db.execute("COMMIT")
                        return existing, False
                    self._db.execute(
                        "REPLACE INTO idem (tenant, key, job_id) VALUES (?, ?, ?)",
                        (job.tenant, job.idempotency_key, job.id),
                    )
                check_quota(self._unfinished(job.tenant), job, max_open_items)
                self._write(job, insert=True)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return job, True

    def get(self, job_id: str) -> JobRecord | None:
        """Read one record."""
        with self._lock:
            return self._read(job_id)

    def update(self, job_id: str, fn: Mutator) -> JobRecord | None:
        """Read, mutate and write back under one IMMEDIATE transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                job = self._read(job_id)
                if job is not None:
                    fn(job)
                    self._write(job)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return job

    def delete(self, job_id: str) -> None:
        """Delete the record and its idempotency key."""
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self._db.execute("DELETE FROM idem WHERE job_id = ?", (job_id,))
            self._db.execute("DELETE FROM outbox WHERE job_id = ?", (job_id,))

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[JobRecord]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [JobRecord.model_validate_json(r[0]) for r in rows]

    def for_tenant(
        self, tenant: str, limit: int = 50, before: float | None = None
    ) -> list[JobRecord]:
        """Newest first."""
        return self._query(
            "SELECT body FROM jobs WHERE tenant = ? AND created_at < ? "
            "ORDER BY created_at DESC LIMIT ?",
            (tenant, before if before is not None else float("inf"), limit),
        )

    def _unfinished(self, tenant: str) -> list[JobRecord]:
        rows = self._db.execute(
            "SELECT body FROM jobs WHERE tenant = ? AND status IN ('queued', 'running')",
            (tenant,),
        ).fetchall()
        return [JobRecord.model_validate_json(r[0]) for r in rows]

    def open_items(self, tenant: str) -> int:
        """Counted over the tenant's unfinished jobs."""
        with self._lock:
            return open_items(self._unfinished(tenant))

    def active(self) -> list[JobRecord]:
        """Queued and running jobs."""
        return self._query("SELECT body FROM jobs WHERE status IN ('queued', 'running')", ())

    def finished_before(self, t: float) -> list[JobRecord]:
        """Finished jobs with expiry work due."""
        return self._query("SELECT body FROM jobs WHERE sweep_at < ?", (t,))

    def webhooks_due(self, t: float) -> list[JobRecord]:
        """The earliest due outbox entry of each tenant."""
        return self._query(
            "SELECT j.body FROM jobs j JOIN ("
            "  SELECT o.job_id FROM outbox o WHERE o.due_at <= ? AND o.job_id = ("
            "    SELECT p.job_id FROM outbox p WHERE p.tenant = o.tenant"
            "    ORDER BY p.due_at, p.job_id LIMIT 1)"
            ") d ON d.job_id = j.id",
            (t,),
        )

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            return {status: n for status, n in rows.fetchall()}

    def add_stats(self, **values: float) -> None:
        """Upsert-add each counter."""
        with self._lock:
            for name, value in values.items():
                self._db.execute(
                    "INSERT INTO stats (name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, value),
                )

    def stats(self) -> dict[str, float]:
        """All counters."""
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM stats").fetchall())

    def now(self) -> float:
        """This host's clock: one process uses an SQLite store."""
        return time.time()

    def ping(self) -> None:
        """A trivial query."""
        with self._lock:
            self._db.execute("SELECT 1").fetchone()


def _private_file(path: Path) -> None:
    """Create ``path`` (and its folder) readable by the owner only; fix looser modes.

    Records hold file names, callback URLs and reports. SQLite creates its ``-wal`` and
    ``-shm`` files with the database file's mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for extra in ("", "-wal", "-shm", "-journal"):
        target = path.with_name(path.name + extra)
        if target.exists():
            os.chmod(target, 0o600)


def open_jobstore(redis_url: str | None, sqlite_path: Path) -> JobStore:
    """Redis when a URL is given, else the SQLite file."""
    if redis_url:
        from facecloak.contract.store_redis import RedisJobStore

        return RedisJobStore(redis_url)
    return SQLiteJobStore(sqlite_path)
