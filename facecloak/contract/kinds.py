"""Job kinds: what a job does, which options it takes, which queue runs it, and its handler.

A kind is registered once (:func:`register_kind`); the gateway validates options with its
model, the runner dispatches each item to the :class:`Handler` registered for the job's
kind, and the Celery glue routes the generic run-item task to the kind's queue. Adding a
kind is: an options model, one :func:`register_kind` call here, and a handler on the worker
side (``workers.handlers.build_handlers``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from facecloak.contract.augment import AugmentOptions
from facecloak.contract.backdoor import BackdoorScanOptions
from facecloak.contract.options import ItemOutcome, ProtectOptions
from facecloak.contract.queues import GPU_QUEUE

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: units of work (faces) done; raises to stop a canceled job."""


class Handler(Protocol):
    """Runs one item of a job of one kind; bad input is a failed outcome, not an exception."""

    def __call__(
        self, data: bytes, filename: str, options: BaseModel, progress: ProgressFn
    ) -> ItemOutcome:
        """Process the item's bytes with the job's (validated) options."""


Handlers = Mapping[str, Handler]
"""Kind name -> the handler that runs its items."""

Verifier = Callable[[bytes, bytes, "list[str] | None"], Any]
"""``verify(original, protected, models)``: the verification report (a JSON-able mapping or
a pydantic model); raises :class:`facecloak.images.ImageError` for an unreadable photo."""

Probe = Callable[[], None]
"""A readiness check: returns when the dependency is usable, raises otherwise."""


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its name, options model, Celery queue and a line of description."""

    name: str
    options: type[BaseModel]
    queue: str
    description: str


class UnknownKind(ValueError):
    """No job kind of that name is registered."""


_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> JobKind:
    """Add ``kind`` (registering the same kind again is a no-op; a different one is an error)."""
    existing = _KINDS.get(kind.name)
    if existing is not None and existing != kind:
        raise ValueError(f"job kind {kind.name!r} is already registered differently")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    """The kind called ``name``; :class:`UnknownKind` otherwise."""
    try:
        return _KINDS[name]
    except KeyError:
        known = ", ".join(sorted(_KINDS))
        raise UnknownKind(f"unknown job kind {name!r}; known kinds: {known}") from None


def kinds() -> list[JobKind]:
    """Every registered kind, in registration order."""
    return list(_KINDS.values())


PROTECT = register_kind(
    JobKind(
        name="protect",
        options=ProtectOptions,
        queue=GPU_QUEUE,
        description="Protect face photos with adversarial perturbations.",
    )
)
BACKDOOR_SCAN = register_kind(
    JobKind(
        "backdoor_scan", BackdoorScanOptions, GPU_QUEUE, "Scan an image classifier for backdoors."
    )
)
AUGMENT = register_kind(
    JobKind(
        "augment",
        AugmentOptions,
        GPU_QUEUE,
        "Adversarial data augmentation and AdvAmd fine-tuning of an image classifier.",
    )
)
