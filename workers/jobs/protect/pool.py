"""Protect a batch of photos at once: worker processes, each with its own Runtime.

One photo's attack scales poorly over CPU threads (its tensors are small: a batch of two
112-px crops per recognizer, one face region): two threads make it only about 1.47x faster
than one. A batch of photos therefore finishes sooner as several photos at a time, each on
its own process with a share of the threads (``facecloak protect --workers``). Each worker
loads its own models (about 3 GB peak on large photos), so the automatic choice stays small.
When fewer photos than workers are left, the workers still attacking take over the idle
workers' threads (checked at every attack step), so the last photo of a batch is not left
on one thread.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from facecloak.contract.options import PhotoOutcome, ProtectOptions
from facecloak.settings import Settings

MAX_AUTO_WORKERS = 4
"""Most processes the automatic choice starts (each holds its own models)."""

_RUNTIME: object | None = None
"""The worker process's Runtime (set by :func:`_start_worker`)."""
_BUSY: Any = None
"""The pool's shared count of workers attacking a photo (a ``multiprocessing.Value``)."""
_CPU_THREADS = 1
"""Threads of the whole pool, shared out between the busy workers."""


@dataclass(frozen=True)
class PoolShape:
    """How a batch runs: ``workers`` processes of ``threads`` torch threads each."""

    workers: int
    threads: int


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_shape(requested: int, photos: int, settings: Settings, cpus: int) -> PoolShape:
    """Workers and threads for ``photos`` photos.

    ``requested`` 0 is automatic: one worker per CPU (at most :data:`MAX_AUTO_WORKERS`,
    never more than the photos), and one worker on a GPU. The CPUs (``settings.torch_threads``
    when set, else ``cpus``) are shared out between the workers.
    """
    if requested < 0:
        raise ValueError(f"workers must be >= 0, got {requested}")
    total = settings.torch_threads if settings.torch_threads > 0 else max(1, cpus)
    if requested == 0:
        from workers.jobs.runtime import choose_device  # "auto" resolves as the workers will

        on_gpu = choose_device(settings.device).type == "cuda"
        requested = 1 if on_gpu else min(total, MAX_AUTO_WORKERS)
    workers = max(1, min(requested, photos))
    return PoolShape(workers=workers, threads=max(1, total // workers))


def _start_worker(settings: Settings, shape: PoolShape, busy: Any) -> None:
    """Process initializer: this worker's Runtime, on its share of the threads."""
    from workers.jobs.runtime import Runtime

    global _RUNTIME, _BUSY, _CPU_THREADS
    _RUNTIME = Runtime(settings.model_copy(update={"torch_threads": shape.threads}))
    _BUSY, _CPU_THREADS = busy, shape.workers * shape.threads


def _share_threads(done: int, total: int) -> None:
    """Progress hook: this worker's threads are the pool's over the workers now busy."""
    import torch

    want = max(1, _CPU_THREADS // max(1, int(_BUSY.value)))
    if want != torch.get_num_threads():
        torch.set_num_threads(want)


def _protect(data: bytes, name: str, options: ProtectOptions) -> PhotoOutcome:
    from workers.jobs.protect.job import protect_photo
    from workers.jobs.runtime import Runtime

    assert isinstance(_RUNTIME, Runtime), "worker started without a runtime"
    with _BUSY.get_lock():
        _BUSY.value += 1
    try:
        return protect_photo(data, name, options, _RUNTIME, _share_threads)
    finally:
        with _BUSY.get_lock():
            _BUSY.value -= 1


class WorkerDied(RuntimeError):
    """A worker process ended without a result (killed, e.g. out of memory)."""


def protect_in_pool(
    photos: Sequence[tuple[str, bytes]],
    options: ProtectOptions,
    settings: Settings,
    shape: PoolShape,
) -> Iterator[tuple[int, PhotoOutcome | WorkerDied]]:
    """``(index, outcome)`` for each ``(name, data)`` of ``photos``, in the order they finish.

    A photo whose worker died yields :class:`WorkerDied` instead of an outcome, as does
    every photo still waiting then (the pool cannot be trusted after that).
    """
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(
        max_workers=shape.workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(settings, shape, context.Value("i", 0)),
    ) as pool:
        pending: dict[Future[PhotoOutcome], int] = {
            pool.submit(_protect, data, name, options): i for i, (name, data) in enumerate(photos)
        }
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                try:
                    yield index, future.result()
                except BrokenProcessPool as exc:
                    yield index, WorkerDied(f"worker process died: {exc}")
