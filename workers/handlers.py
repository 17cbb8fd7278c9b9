"""The real job handlers, verifier, warm-up and readiness probes of a process.

Built once per process from its :class:`workers.jobs.runtime.Runtime` (``facecloak serve``
in embedded mode, ``facecloak worker``). The job code (torch) is imported when an item
runs, not when this module is imported, so the Celery app module stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

from facecloak.contract.kinds import (
    AUGMENT,
    BACKDOOR_SCAN,
    PROTECT,
    Handler,
    Probe,
    ProgressFn,
    Verifier,
)
from facecloak.contract.options import ItemOutcome, ProtectOptions
from workers.jobs.augment.handler import augment_handler
from workers.jobs.backdoor.handler import backdoor_scan_handler

if TYPE_CHECKING:
    from models.registry import ModelStore
    from workers.jobs.runtime import Runtime


def build_handlers(runtime: Runtime) -> dict[str, Handler]:
    """Job kind -> handler, each running on ``runtime``."""

    def protect(
        data: bytes, filename: str, options: BaseModel, progress: ProgressFn
    ) -> ItemOutcome:
        from workers.jobs.protect import protect_photo

        if not isinstance(options, ProtectOptions):
            raise TypeError(f"protect needs ProtectOptions, not {type(options).__name__}")
        return protect_photo(data, filename, options, runtime, progress)

    return {
        PROTECT.name: protect,
        BACKDOOR_SCAN.name: backdoor_scan_handler(),
        AUGMENT.name: augment_handler(),
    }


def build_verifier(runtime: Runtime) -> Verifier:
    """``verify(original, protected, models)`` on ``runtime``."""

    def verify(original: bytes, protected: bytes, models: list[str] | None) -> object:
        from workers.jobs.verify import verify_pair

        return verify_pair(original, protected, models, runtime)

    return verify


def build_warm_up(runtime: Runtime) -> Callable[[], None]:
    """Load the detector and the default surrogates (once per worker process)."""

    def warm_up() -> None:
        runtime.detector()
        for name in ProtectOptions().surrogates:
            runtime.recognizer(name)

    return warm_up


def recognizer_names(store: ModelStore) -> Callable[[], Collection[str]]:
    """The face recognizers callers may name (shipped and user-added), read when asked."""
    return lambda: [spec.name for spec in store.specs() if spec.role == "recognizer"]


def models_probe(store: ModelStore, names: Sequence[str] | None = None) -> Probe:
    """Readiness: every model in ``names`` (default surrogates) has its file in the cache."""
    wanted = list(names or ProtectOptions().surrogates)
    ready: set[str] = set()

    def probe() -> None:
        for name in wanted:
            if name in ready:
                continue
            spec = store.spec(name)
            if not store.is_available(spec):
                raise RuntimeError(f"model {name} is not available at {store.cached_path(spec)}")
            ready.add(name)

    return probe
