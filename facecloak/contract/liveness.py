"""Keep a running item honest: a wall-clock deadline, a lease that lives only while the run
makes progress, and a pool thread that is never lost to a hung handler.

- :class:`Watch` holds a run's deadline (``task_time_limit_seconds``) and the time of its
  last progress report; past the deadline, or after ``progress_timeout_seconds`` without a
  report, it gives a verdict (``time_limit`` or ``no_progress``).
- :class:`Heartbeat` extends the lease while the watch has no verdict, and gives the run
  up (the runner fails the item) once it has one: a hung run stops holding its lease.
- :func:`run_guarded` runs the handler on a thread of its own, so the caller (a thread of
  the embedded pool) gets back to its queue when the run is given up.

A Python thread cannot be killed. A handler given up keeps running on its own (abandoned)
thread until it returns or calls ``progress`` (which then raises); its late result is
discarded. Abandoned threads are logged and counted, at most :data:`MAX_ABANDONED` at a
time per process: past that, the caller waits for the hung handler as it would without
this module (the item is failed all the same), so a pile of hung handlers cannot eat the
process's memory; the log says the process needs a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ABANDONED = 4
"""Hung handler threads a process walks away from before its pool threads wait for them."""

_lock = threading.Lock()
_abandoned: set[threading.Thread] = set()


class GaveUp(Exception):
    """Raised from the progress callback of a run that was given up (its item is failed)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Watch:
    """A run's deadline and last progress report (monotonic clock), and the verdict once it
    is given up. ``woken`` is set when the run ends or is given up."""

    def __init__(self, time_limit: float, progress_timeout: float) -> None:
        self.started = self.last = time.monotonic()
        self.time_limit, self.progress_timeout = time_limit, progress_timeout
        self.deadline = self.started + time_limit
        self.verdict: GaveUp | None = None
        self.woken = threading.Event()

    def beat(self) -> None:
        """The handler reported progress."""
        self.last = time.monotonic()

    def overdue(self, t: float) -> GaveUp | None:
        """The verdict at time ``t``: past the deadline, or silent too long; else None."""
        if t >= self.deadline:
            return GaveUp("time_limit", f"processing took over {self.time_limit:g}s")
        if self.progress_timeout > 0 and t - self.last >= self.progress_timeout:
            message = f"no progress for {self.progress_timeout:g}s: processing was given up"
            return GaveUp("no_progress", message)
        return None

    def next_check(self, t: float) -> float:
        """Seconds from ``t`` until a verdict could first be due."""
        due = self.deadline
        if self.progress_timeout > 0:
            due = min(due, self.last + self.progress_timeout)
        return due - t


class Heartbeat(threading.Thread):
    """Calls ``renew()`` every ``period`` while the watch has no verdict; once it has one,
    records it, calls ``give_up(verdict)`` and stops renewing.

    Errors of either call are logged: a store hiccup must not end the run (the lease
    tolerates a missed renewal; a failed give-up leaves the lease to run out and the sweep
    recovers the item).
    """

    def __init__(
        self,
        watch: Watch,
        period: float,
        renew: Callable[[], None],
        give_up: Callable[[GaveUp], None],
        name: str,
    ) -> None:
        super().__init__(daemon=True, name=name)
        self.watch, self.period = watch, period
        self.renew, self.give_up = renew, give_up
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self._pause()):
            verdict = self.watch.overdue(time.monotonic())
            if verdict is not None:
                self.watch.verdict = verdict
                try:
                    self.give_up(verdict)
                except Exception:
                    log.warning("%s: giving up failed", self.name, exc_info=True)
                finally:
                    self.watch.woken.set()
                return
            try:
                self.renew()
            except Exception:
                log.warning("%s: lease renewal failed", self.name, exc_info=True)

    def _pause(self) -> float:
        return max(0.05, min(self.period, self.watch.next_check(time.monotonic())))


def run_guarded(fn: Callable[[], T], watch: Watch, name: str) -> T | None:
    """``fn()`` on a daemon thread of its own, named ``name``: its value (or its exception,
    raised here), or None once ``watch`` gave the run up while ``fn`` still runs.

    The thread of a run given up is abandoned (see the module's docstring), unless
    :data:`MAX_ABANDONED` are already: then this waits for ``fn`` to return.
    """
    box: list[tuple[bool, Any]] = []
    done = threading.Event()

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller, if it is still there
            box.append((False, exc))
        finally:
            with _lock:
                done.set()
                late = thread in _abandoned
                _abandoned.discard(thread)
            watch.woken.set()
            if late:
                log.warning("abandoned thread %s ended; its result was discarded", name)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    watch.woken.wait()
    with _lock:
        if not done.is_set() and len(_abandoned) < MAX_ABANDONED:
            _abandoned.add(thread)
            count = len(_abandoned)
        else:
            count = 0
    if count:
        log.error("%s hangs: thread abandoned (%d of at most %d)", name, count, MAX_ABANDONED)
        return None
    if not done.is_set():
        log.error(
            "%s hangs and %d threads are abandoned already: this pool thread waits for it; "
            "restart the process",
            name,
            MAX_ABANDONED,
        )
        done.wait()
    ok, value = box[0]
    if not ok:
        raise value
    result: T = value
    return result


def abandoned_threads() -> list[str]:
    """Names of the abandoned handler threads still running in this process."""
    with _lock:
        return sorted(t.name for t in _abandoned)
