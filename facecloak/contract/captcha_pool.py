"""CAPTCHA pools (torch-free): ready CAPTCHAs per configuration, and the issued ones.

Workers fill a pool ahead of demand (``put_many``); a request takes one (``issue``): it
leaves the pool and becomes an issued CAPTCHA with an id and an expiry, whose hashed
answer verifies at most once (``verify`` removes it whatever the outcome).
:class:`LocalCaptchaPool` lives in the process (embedded mode); :class:`RedisCaptchaPool`
in Redis (distributed mode: the gateway issues and verifies, workers fill).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from typing import Any, Literal, Protocol

from facecloak.contract.captcha import IssuedCaptcha, PooledCaptcha, answer_matches

Verdict = Literal["pass", "fail", "unknown"]
"""``unknown``: no such id, expired, or already verified."""
MAX_CONFIGS = 16
"""Configurations a pool serves at most (each costs a filled pool)."""


class CaptchaPool(Protocol):
    """What the gateway (issue, verify) and the filler (size, put_many) need."""

    def size(self, key: str) -> int:
        """Ready CAPTCHAs of configuration ``key``."""

    def put_many(self, key: str, items: list[PooledCaptcha]) -> None:
        """Add ready CAPTCHAs to configuration ``key``'s pool."""

    def issue(self, key: str, tenant: str, ttl: float) -> tuple[IssuedCaptcha, bytes] | None:
        """Take one CAPTCHA (its record and PNG), valid ``ttl`` seconds; None when empty."""

    def verify(self, captcha_id: str, answer: str, tenant: str) -> Verdict:
        """Check ``answer`` once; the CAPTCHA is gone afterwards."""

    def want(self, key: str, config_json: str) -> bool:
        """Remember that configuration ``key`` (as JSON) is asked for (fillers fill it);
        False when it is new and :data:`MAX_CONFIGS` are already served."""

    def wanted(self) -> list[str]:
        """The configurations asked for so far, as JSON."""


def new_id() -> str:
    """An unguessable CAPTCHA id."""
    return secrets.token_urlsafe(18)


def _issued(item: PooledCaptcha, tenant: str, ttl: float) -> IssuedCaptcha:
    return IssuedCaptcha(
        id=new_id(), tenant=tenant, salt=item.salt, answer_hash=item.answer_hash,
        expires_at=time.time() + ttl,
    )  # fmt: skip


def _judge(record: IssuedCaptcha | None, answer: str, tenant: str) -> Verdict:
    if record is None or record.tenant != tenant or record.expires_at <= time.time():
        return "unknown"
    return "pass" if answer_matches(answer, record.salt, record.answer_hash) else "fail"


class LocalCaptchaPool:
    """In-process pools and issued CAPTCHAs (embedded mode); thread-safe."""

    def __init__(self, target: int = 64) -> None:
        self.target = int(target)
        self._ready: dict[str, deque[PooledCaptcha]] = {}
        self._issued: dict[str, IssuedCaptcha] = {}
        self._wanted: dict[str, str] = {}
        self._lock = threading.Lock()

    def want(self, key: str, config_json: str) -> bool:
        with self._lock:
            if key not in self._wanted and len(self._wanted) >= MAX_CONFIGS:
                return False
            self._wanted.setdefault(key, config_json)
            return True

    def wanted(self) -> list[str]:
        with self._lock:
            return list(self._wanted.values())

    def size(self, key: str) -> int:
        with self._lock:
            return len(self._ready.get(key, ()))

    def put_many(self, key: str, items: list[PooledCaptcha]) -> None:
        with self._lock:
            self._ready.setdefault(key, deque()).extend(items)

    def issue(self, key: str, tenant: str, ttl: float) -> tuple[IssuedCaptcha, bytes] | None:
        with self._lock:
            ready = self._ready.get(key)
            if not ready:
                return None
            item = ready.popleft()
            record = _issued(item, tenant, ttl)
            self._drop_expired()
            self._issued[record.id] = record
        return record, item.png

    def verify(self, captcha_id: str, answer: str, tenant: str) -> Verdict:
        with self._lock:
            record = self._issued.get(captcha_id)
            if record is not None and record.tenant == tenant:
                del self._issued[captcha_id]
        return _judge(record, answer, tenant)

    def _drop_expired(self) -> None:
        now = time.time()
        for captcha_id in [k for k, v in self._issued.items() if v.expires_at <= now]:
            del self._issued[captcha_id]


class RedisCaptchaPool:
    """Pools as Redis lists (``<p>captcha:pool:<key>``), issued CAPTCHAs as strings with a
    TTL (``<p>captcha:issued:<id>``) taken with ``GETDEL``, so one verification wins.
    """

    def __init__(self, client: Any, prefix: str = "fc:") -> None:
        self.r, self.p = client, prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "fc:") -> RedisCaptchaPool:
        """A pool on the Redis at ``url``."""
        import redis

        return cls(redis.Redis.from_url(url), prefix)

    def _pool(self, key: str) -> str:
        return f"{self.p}captcha:pool:{key}"

    def _record(self, captcha_id: str) -> str:
        return f"{self.p}captcha:issued:{captcha_id}"

    def size(self, key: str) -> int:
        return int(self.r.llen(self._pool(key)))

    def want(self, key: str, config_json: str) -> bool:
        wanted = f"{self.p}captcha:wanted"
        if self.r.hexists(wanted, key):
            return True
        if int(self.r.hlen(wanted)) >= MAX_CONFIGS:
            return False
        self.r.hsetnx(wanted, key, config_json)
        return True

    def wanted(self) -> list[str]:
        values = self.r.hvals(f"{self.p}captcha:wanted")
        return [v.decode() if isinstance(v, bytes) else str(v) for v in values]

    def put_many(self, key: str, items: list[PooledCaptcha]) -> None:
        if items:
            self.r.rpush(self._pool(key), *[item.model_dump_json() for item in items])

    def issue(self, key: str, tenant: str, ttl: float) -> tuple[IssuedCaptcha, bytes] | None:
        raw = self.r.lpop(self._pool(key))
        if raw is None:
            return None
        item = PooledCaptcha.model_validate_json(raw)
        record = _issued(item, tenant, ttl)
        self.r.set(self._record(record.id), record.model_dump_json(), px=max(1, int(ttl * 1000)))
        return record, item.png

    def verify(self, captcha_id: str, answer: str, tenant: str) -> Verdict:
        key = self._record(captcha_id)
        raw = self.r.get(key)
        if raw is None:
            return "unknown"
        record = IssuedCaptcha.model_validate_json(raw)
        if record.tenant != tenant or self.r.delete(key) != 1:
            return "unknown"  # another tenant's id, or a concurrent verification won
        return _judge(record, answer, tenant)
