"""Per-tenant token-bucket rate limit on submissions (in memory, per gateway process)."""

from __future__ import annotations

import math
import threading
import time

from service.errors import ApiError


class RateLimiter:
    """``per_minute`` requests a minute per tenant, with bursts up to that many."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(max(per_minute, 0))
        self.rate = self.capacity / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, tenant: str) -> None:
        """Take one token, or raise :class:`ApiError` 429 with ``Retry-After``."""
        if self.capacity <= 0:
            return
        with self._lock:
            t = time.monotonic()
            tokens, last = self._buckets.get(tenant, (self.capacity, t))
            tokens = min(self.capacity, tokens + (t - last) * self.rate)
            if tokens < 1.0:
                self._buckets[tenant] = (tokens, t)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests; the limit is {int(self.capacity)} a minute",
                    headers={"Retry-After": str(max(wait, 1))},
                )
            self._buckets[tenant] = (tokens - 1.0, t)
