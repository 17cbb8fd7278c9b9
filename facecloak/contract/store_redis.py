"""The Redis job store (distributed mode) behind the :class:`JobStore` protocol."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

from facecloak.contract.records import JOB_DONE, JobRecord
from facecloak.contract.store import Mutator, check_quota, open_items


def idem_key(prefix: str, tenant: str, key: str) -> str:
    """The Redis key of a tenant's idempotency key; the tenant is escaped, so no two
    (tenant, key) pairs share one (``a:b`` + ``c`` vs ``a`` + ``b:c``)."""
    return f"{prefix}idem:{quote(tenant, safe='')}:{key}"


class RedisJobStore:
    """Records as JSON strings in Redis, with small indexes (distributed mode).

    Keys (prefix ``fc:``): ``job:<id>`` the record, ``tenant:<t>`` a sorted set of job ids by
    creation time, ``active`` the unfinished ids, ``expiry`` finished ids by expiry time,
    ``idem:<t>:<key>`` the job of an idempotency key (``<t>`` percent-escaped), ``open:<t>`` the
    tenant's unfinished ids (for its quota), ``outbox:<t>`` the tenant's jobs with a webhook
    to send by due time and ``outbox-tenants`` the tenants that ever had one, ``count`` jobs
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
            pipe.srem(self._open(job.tenant), job.id)
            if job.sweep_at is not None:
                pipe.zadd(f"{self.p}expiry", {job.id: job.sweep_at})
        else:
            pipe.sadd(f"{self.p}active", job.id)
            pipe.sadd(self._open(job.tenant), job.id)
        due = job.webhook_due
        if due is None:
            pipe.zrem(self._outbox(job.tenant), job.id)
        else:
            pipe.zadd(self._outbox(job.tenant), {job.id: due})
            pipe.sadd(f"{self.p}outbox-tenants", job.tenant)

    def _outbox(self, tenant: str) -> str:
        return f"{self.p}outbox:{quote(tenant, safe='')}"

    def _open(self, tenant: str) -> str:
        return f"{self.p}open:{quote(tenant, safe='')}"

    def create(self, job: JobRecord, max_open_items: int | None = None) -> tuple[JobRecord, bool]:
        """WATCH the idempotency key and the tenant's unfinished set; check the quota; SET
        the key and the record in one MULTI (a concurrent submit makes this one retry)."""
        key = job.idempotency_key
        idem = idem_key(self.p, job.tenant, key) if key else None

        def tx(pipe: Any) -> tuple[JobRecord, bool]:
            if idem is not None:
                existing_id = pipe.get(idem)
                if existing_id is not None:
                    raw = pipe.get(f"{self.p}job:{_text(existing_id)}")
                    if raw is not None:
                        return JobRecord.model_validate_json(raw), False
            if max_open_items:
                check_quota(self._many(list(pipe.smembers(opened))), job, max_open_items)
            pipe.multi()
            if idem is not None:
                pipe.set(idem, job.id)
            pipe.zadd(f"{self.p}tenant:{job.tenant}", {job.id: job.created_at})
            self._index(pipe, job, None)
            return job, True

        opened = self._open(job.tenant)
        watch = [idem, opened] if idem else [opened]
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
        pipe.srem(self._open(job.tenant), job_id)
        pipe.zrem(self._outbox(job.tenant), job_id)
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

    def open_items(self, tenant: str) -> int:
        """Counted over the tenant's unfinished jobs."""
        return open_items(self._many(list(self.r.smembers(self._open(tenant)))))

    def active(self) -> list[JobRecord]:
        """Members of the active set."""
        return self._many(list(self.r.smembers(f"{self.p}active")))

    def finished_before(self, t: float) -> list[JobRecord]:
        """From the expiry sorted set."""
        return self._many(self.r.zrangebyscore(f"{self.p}expiry", "-inf", t))

    def webhooks_due(self, t: float) -> list[JobRecord]:
        """The earliest entry of each tenant's outbox, if due."""
        tenants = [_text(x) for x in self.r.smembers(f"{self.p}outbox-tenants")]
        pipe = self.r.pipeline()
        for tenant in tenants:
            pipe.zrangebyscore(self._outbox(tenant), "-inf", t, 0, 1)
        firsts = [ids[0] for ids in pipe.execute() if ids]
        return self._many(firsts)

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

    def now(self) -> float:
        """Redis ``TIME``: one clock for every gateway and worker."""
        seconds, micros = self.r.time()
        return float(seconds) + float(micros) / 1e6

    def ping(self) -> None:
        """PING."""
        self.r.ping()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
