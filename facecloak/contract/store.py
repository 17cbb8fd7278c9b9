"""Job stores: where job records live. SQLite for embedded mode, Redis for distributed mode.

Every change is :meth:`JobStore.update`, an atomic read-modify-write: ``fn`` mutates the
record in place and may be called more than once (on a write conflict), so it must only
depend on the record it is given. Idempotency keys are reserved in the same atomic step
that creates the job, so two concurrent submits with one key make one job.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote

from facecloak.contract.records import JOB_DONE, JobRecord

Mutator = Callable[[JobRecord], None]


class JobStore(Protocol):
    """What the gateway and the workers need from a job store."""

    def create(self, job: JobRecord) -> tuple[JobRecord, bool]:
        """Insert ``job``; if its tenant+idempotency key exists, return (that job, False)."""

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
            """
        )

    def _write(self, job: JobRecord, insert: bool = False) -> None:
        verb = "INSERT" if insert else "REPLACE"
        self._db.execute(
            f"{verb} INTO jobs (id, tenant, status, created_at, sweep_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job.id, job.tenant, job.status, job.created_at, job.sweep_at, job.model_dump_json()),
        )

    def _read(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None

    def create(self, job: JobRecord) -> tuple[JobRecord, bool]:
        """Insert, reserving the idempotency key in the same transaction."""
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

    def active(self) -> list[JobRecord]:
        """Queued and running jobs."""
        return self._query("SELECT body FROM jobs WHERE status IN ('queued', 'running')", ())

    def finished_before(self, t: float) -> list[JobRecord]:
        """Finished jobs with expiry work due."""
        return self._query("SELECT body FROM jobs WHERE sweep_at < ?", (t,))

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


def idem_key(prefix: str, tenant: str, key: str) -> str:
    """The Redis key of a tenant's idempotency key; the tenant is escaped, so no two
    (tenant, key) pairs share one (``a:b`` + ``c`` vs ``a`` + ``b:c``)."""
    return f"{prefix}idem:{quote(tenant, safe='')}:{key}"


class RedisJobStore:
    """Records as JSON strings in Redis, with small indexes (distributed mode).

    Keys (prefix ``fc:``): ``job:<id>`` the record, ``tenant:<t>`` a sorted set of job ids by
    creation time, ``active`` the unfinished ids, ``expiry`` finished ids by expiry time,
    ``idem:<t>:<key>`` the job of an idempotency key (``<t>`` percent-escaped), ``count`` jobs
    per status, ``stats``.
    Run Redis with AOF persistence so that jobs survive a Redis restart.
    """

    def __init__(self, url: str, prefix: str = "fc:") -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.p = prefix
        self.r: Any = redis.Redis.from_url(
            url,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 6),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            socket_connect_timeout=3,
            socket_timeout=10,
            health_check_interval=15,
        )

    def _index(self, pipe: Any, job: JobRecord, before: str | None) -> None:
        pipe.set(f"{self.p}job:{job.id}", job.model_dump_json())
        if before != job.status:
            if before is not None:
                pipe.hincrby(f"{self.p}count", before, -1)
            pipe.hincrby(f"{self.p}count", job.status, 1)
        if job.status in JOB_DONE:
            pipe.srem(f"{self.p}active", job.id)
            if job.sweep_at is not None:
                pipe.zadd(f"{self.p}expiry", {job.id: job.sweep_at})
        else:
            pipe.sadd(f"{self.p}active", job.id)

    def create(self, job: JobRecord) -> tuple[JobRecord, bool]:
        """WATCH the idempotency key; SET it and the record in one MULTI."""
        key = job.idempotency_key
        idem = idem_key(self.p, job.tenant, key) if key else None

        def tx(pipe: Any) -> tuple[JobRecord, bool]:
            if idem is not None:
                existing_id = pipe.get(idem)
                if existing_id is not None:
                    raw = pipe.get(f"{self.p}job:{_text(existing_id)}")
                    if raw is not None:
                        return JobRecord.model_validate_json(raw), False
            pipe.multi()
            if idem is not None:
                pipe.set(idem, job.id)
            pipe.zadd(f"{self.p}tenant:{job.tenant}", {job.id: job.created_at})
            self._index(pipe, job, None)
            return job, True

        watch = [idem] if idem else []
        result: tuple[JobRecord, bool] = cast(Any, self.r).transaction(
            tx, *watch, value_from_callable=True
        )
        return result

    def get(self, job_id: str) -> JobRecord | None:
        """GET the record."""
        raw = self.r.get(f"{self.p}job:{job_id}")
        return JobRecord.model_validate_json(raw) if raw else None

    def update(self, job_id: str, fn: Mutator) -> JobRecord | None:
        """WATCH the record, mutate, write back in MULTI (retried on conflict)."""
        key = f"{self.p}job:{job_id}"

        def tx(pipe: Any) -> JobRecord | None:
            raw = pipe.get(key)
            if raw is None:
                return None
            job = JobRecord.model_validate_json(raw)
            before = job.status
            fn(job)
            pipe.multi()
            self._index(pipe, job, before)
            return job

        result: JobRecord | None = cast(Any, self.r).transaction(tx, key, value_from_callable=True)
        return result

    def delete(self, job_id: str) -> None:
        """Remove the record from every index."""
        job = self.get(job_id)
        if job is None:
            return
        pipe = self.r.pipeline()
        pipe.delete(f"{self.p}job:{job_id}")
        pipe.zrem(f"{self.p}tenant:{job.tenant}", job_id)
        pipe.srem(f"{self.p}active", job_id)
        pipe.zrem(f"{self.p}expiry", job_id)
        pipe.hincrby(f"{self.p}count", job.status, -1)
        if job.idempotency_key:
            pipe.delete(idem_key(self.p, job.tenant, job.idempotency_key))
        pipe.execute()

    def _many(self, ids: list[Any]) -> list[JobRecord]:
        if not ids:
            return []
        raws = self.r.mget([f"{self.p}job:{_text(i)}" for i in ids])
        return [JobRecord.model_validate_json(r) for r in raws if r]

    def for_tenant(
        self, tenant: str, limit: int = 50, before: float | None = None
    ) -> list[JobRecord]:
        """Newest first, from the tenant's sorted set."""
        top = f"({before}" if before is not None else "+inf"
        ids = self.r.zrevrangebyscore(f"{self.p}tenant:{tenant}", top, "-inf", 0, limit)
        return self._many(ids)

    def active(self) -> list[JobRecord]:
        """Members of the active set."""
        return self._many(list(self.r.smembers(f"{self.p}active")))

    def finished_before(self, t: float) -> list[JobRecord]:
        """From the expiry sorted set."""
        return self._many(self.r.zrangebyscore(f"{self.p}expiry", "-inf", t))

    def counts(self) -> dict[str, int]:
        """The per-status counters."""
        raw = self.r.hgetall(f"{self.p}count")
        return {k.decode(): int(v) for k, v in raw.items()}

    def add_stats(self, **values: float) -> None:
        """HINCRBYFLOAT each counter."""
        pipe = self.r.pipeline()
        for name, value in values.items():
            pipe.hincrbyfloat(f"{self.p}stats", name, value)
        pipe.execute()

    def stats(self) -> dict[str, float]:
        """All counters."""
        raw = self.r.hgetall(f"{self.p}stats")
        return {k.decode(): float(v) for k, v in raw.items()}

    def ping(self) -> None:
        """PING."""
        self.r.ping()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def open_jobstore(redis_url: str | None, sqlite_path: Path) -> JobStore:
    """Redis when a URL is given, else the SQLite file."""
    if redis_url:
        return RedisJobStore(redis_url)
    return SQLiteJobStore(sqlite_path)
