"""Keeps CAPTCHA pools filled ahead of demand (a background thread on the worker side).

The filler tops every configuration up to ``target`` ready CAPTCHAs, in batches, and
then polls. Configurations are those the gateway was asked for (the pool remembers them:
``CaptchaPool.wanted``) plus, with ``prefill_default``, the default one from the start.
Without it (embedded mode) the filler idles until the first CAPTCHA request, so a gateway
nobody asks for CAPTCHAs spends no CPU on them. The maker (and its models) is built on
first use inside the filler's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from facecloak.contract.captcha import CaptchaConfig
from facecloak.contract.captcha_pool import CaptchaPool
from workers.jobs.captcha.maker import CaptchaMaker

log = logging.getLogger(__name__)


class PoolFiller:
    """Fills ``pool`` for the wanted configurations up to ``target`` each."""

    def __init__(
        self,
        pool: CaptchaPool,
        target: int = 32,
        batch: int = 8,
        make_maker: Callable[[], CaptchaMaker] = CaptchaMaker,
        poll_seconds: float = 0.5,
        prefill_default: bool = True,
    ) -> None:
        self.pool, self.target, self.batch = pool, int(target), int(batch)
        self.make_maker, self.poll_seconds = make_maker, float(poll_seconds)
        self.prefill_default = bool(prefill_default)
        self.stopped = threading.Event()
        self._maker: CaptchaMaker | None = None
        self._thread: threading.Thread | None = None

    @property
    def maker(self) -> CaptchaMaker:
        """The CAPTCHA maker, built on first use."""
        if self._maker is None:
            self._maker = self.make_maker()
        return self._maker

    def configs(self) -> list[CaptchaConfig]:
        """Every configuration requested so far (and the default one if prefilled)."""
        wanted = [CaptchaConfig.model_validate_json(raw) for raw in self.pool.wanted()]
        first = [CaptchaConfig()] if self.prefill_default else []
        return list({c.key: c for c in [*first, *wanted]}.values())

    def fill_once(self) -> int:
        """One batch for each configuration below target; the number made."""
        made = 0
        for config in self.configs():
            missing = self.target - self.pool.size(config.key)
            if missing <= 0 or self.stopped.is_set():
                continue
            batch = self.maker.make(config, min(self.batch, missing))
            self.pool.put_many(config.key, [m.pooled() for m in batch])
            made += len(batch)
        return made

    def run(self) -> None:
        """Fill until stopped; errors are logged and retried after a pause."""
        while not self.stopped.is_set():
            try:
                made = self.fill_once()
            except Exception:  # keep serving what is pooled; retry later
                log.exception("CAPTCHA pool filler failed; retrying")
                made = 0
            if made == 0:
                self.stopped.wait(self.poll_seconds)

    def start(self) -> threading.Thread:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="captcha-pool", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current batch."""
        self.stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
