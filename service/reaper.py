"""The gateway's background sweep: retry photos of dead workers, expire old results."""

from __future__ import annotations

import logging
import threading

from facecloak.contract.context import Context
from facecloak.contract.runner import reap
from service.dispatch import Dispatcher

log = logging.getLogger(__name__)


class Reaper(threading.Thread):
    """Calls :func:`facecloak.contract.runner.reap` every ``reaper_interval_seconds``."""

    def __init__(self, ctx: Context, dispatcher: Dispatcher) -> None:
        super().__init__(daemon=True, name="facecloak-reaper")
        self.ctx, self.dispatcher = ctx, dispatcher
        self.stopped = threading.Event()

    def sweep(self) -> None:
        """One pass (also callable directly, e.g. from tests)."""
        reap(self.ctx, self.dispatcher.enqueue, self.dispatcher.finished)

    def run(self) -> None:
        while not self.stopped.wait(self.ctx.settings.reaper_interval_seconds):
            try:
                self.sweep()
            except Exception:  # e.g. Redis restarting: try again next period
                log.warning("reaper sweep failed", exc_info=True)
