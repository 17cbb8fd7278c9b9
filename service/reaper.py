"""The gateway's background sweep: retry photos of dead workers, re-send photos queued too
long, expire old results, and delete orphaned uploads."""

from __future__ import annotations

import logging
import threading
import time

from facecloak.contract.context import Context
from facecloak.contract.sweeps import Resends, reap, sweep_orphans
from service.dispatch import Dispatcher

log = logging.getLogger(__name__)


class Reaper(threading.Thread):
    """Calls :func:`~facecloak.contract.sweeps.reap` every ``reaper_interval_seconds`` and
    :func:`~facecloak.contract.sweeps.sweep_orphans` every ``orphans_period`` seconds."""

    def __init__(self, ctx: Context, dispatcher: Dispatcher) -> None:
        super().__init__(daemon=True, name="facecloak-reaper")
        self.ctx, self.dispatcher = ctx, dispatcher
        self.stopped = threading.Event()
        self.sent = Resends()
        self.orphans_period = min(300.0, max(1.0, ctx.settings.orphan_max_age_seconds / 4))

    def sweep(self) -> None:
        """One pass (also callable directly, e.g. from tests)."""
        reap(self.ctx, self.dispatcher.enqueue, self.dispatcher.finished, self.sent)

    def sweep_orphans(self) -> list[str]:
        """Delete orphaned uploads past their age bound; the deleted prefixes."""
        return sweep_orphans(self.ctx)

    def run(self) -> None:
        last_orphans = float("-inf")
        while not self.stopped.wait(self.ctx.settings.reaper_interval_seconds):
            try:
                self.sweep()
                if time.monotonic() - last_orphans >= self.orphans_period:
                    last_orphans = time.monotonic()
                    self.sweep_orphans()
            except Exception:  # e.g. Redis restarting: try again next period
                log.warning("reaper sweep failed", exc_info=True)
