"""Per-key token-bucket rate limits (in memory, per gateway process): submissions per tenant,
wrong API keys per client address, CAPTCHA answers.

Memory is bounded: a bucket untouched for a minute has refilled, so it is dropped (it reads
the same as no bucket), and at most ``max_keys`` buckets are kept (the least recently used
dropped first), however many client addresses send requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from service.errors import ApiError

MAX_KEYS = 100_000
"""Buckets kept per limiter at most (26 MB of them, traced with IPv6 addresses as keys)."""


class RateLimiter:
    """``per_minute`` requests a minute per key, with bursts up to that many."""

    def __init__(
        self,
        per_minute: int,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(max(per_minute, 0))
        self.rate = self.capacity / 60.0
        self.max_keys = max(max_keys, 1)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """key -> (tokens, last update), least recently updated first."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Buckets held now."""
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled (untouched for a minute) and any past ``max_keys``."""
        refill_s = self.capacity / self.rate  # empty to full: 60 s
        while self._buckets:
            key, (_, last) = next(iter(self._buckets.items()))
            if now - last < refill_s and len(self._buckets) <= self.max_keys:
                return
            del self._buckets[key]

    def _set(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        self._prune(now)

    def check(self, key: str) -> None:
        """Take one token, or raise :class:`ApiError` 429 with ``Retry-After``."""
        if self.capacity <= 0:
            return
        with self._lock:
            t = self._clock()
            tokens, last = self._buckets.get(key, (self.capacity, t))
            tokens = min(self.capacity, tokens + (t - last) * self.rate)
            if tokens < 1.0:
                self._set(key, tokens, t)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests; the limit is {int(self.capacity)} a minute",
                    headers={"Retry-After": str(max(wait, 1))},
                )
            self._set(key, tokens - 1.0, t)
