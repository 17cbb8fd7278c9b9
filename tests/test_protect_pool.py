"""Photos protected at once in worker processes (``facecloak protect --workers``)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from facecloak.contract.options import ProtectOptions
from facecloak.settings import Settings
from workers.jobs.protect.pool import (
    MAX_AUTO_WORKERS,
    PoolShape,
    WorkerDied,
    pool_shape,
    protect_in_pool,
)

from .helpers import dev_photo


def test_automatic_shape_is_one_single_thread_worker_per_cpu_up_to_the_cap() -> None:
    cpu = Settings(device="cpu")
    assert pool_shape(0, 14, cpu, cpus=2) == PoolShape(workers=2, threads=1)
    assert pool_shape(0, 14, cpu, cpus=16) == PoolShape(workers=MAX_AUTO_WORKERS, threads=4)
    assert pool_shape(0, 1, cpu, cpus=16) == PoolShape(workers=1, threads=16)
    assert pool_shape(0, 0, cpu, cpus=2) == PoolShape(workers=1, threads=2)
    # torch_threads is the CPU budget when set; a GPU runs one photo at a time
    assert pool_shape(0, 9, Settings(device="cpu", torch_threads=3), cpus=16) == PoolShape(3, 1)
    assert pool_shape(0, 9, Settings(device="cuda:0"), cpus=16) == PoolShape(1, 16)
    auto = pool_shape(0, 9, Settings(device="auto"), cpus=16)  # resolved as the workers will
    assert auto == (PoolShape(1, 16) if torch.cuda.is_available() else PoolShape(4, 4))


def test_asked_shape_shares_the_threads_and_never_exceeds_the_photos() -> None:
    cpu = Settings(device="cpu")
    assert pool_shape(1, 14, cpu, cpus=8) == PoolShape(workers=1, threads=8)
    assert pool_shape(3, 14, cpu, cpus=8) == PoolShape(workers=3, threads=2)
    assert pool_shape(6, 2, cpu, cpus=8) == PoolShape(workers=2, threads=4)
    assert pool_shape(8, 14, cpu, cpus=2) == PoolShape(workers=8, threads=1)
    with pytest.raises(ValueError, match="workers must be >= 0"):
        pool_shape(-1, 3, cpu, cpus=2)


def test_cli_rejects_a_negative_worker_count(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "facecloak.cli", "protect", "x.jpg", "-o", str(tmp_path),
         "--workers", "-1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "must be 0 or more" in proc.stderr


@pytest.mark.slow
def test_two_workers_protect_each_photo_and_write_its_report(tmp_path: Path) -> None:
    photos = [dev_photo("img59.jpg"), dev_photo("img12.jpg")]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "facecloak.cli", "protect", *map(str, photos), "-o", str(out),
         "--strength", "medium", "--steps", "40", "--workers", "2"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for photo in photos:
        report = json.loads((out / f"{photo.name}.json").read_text())
        assert report["status"] == "protected", report.get("error")
        assert (out / photo.name).read_bytes() != photo.read_bytes()
        assert f"{photo.name}: protected" in proc.stdout


@pytest.mark.slow
def test_a_worker_that_dies_is_reported_for_its_photo_not_hung_on(settings: Settings) -> None:
    data = dev_photo("img12.jpg").read_bytes()
    options = ProtectOptions(strength="medium", steps=400, verify=False)
    results = protect_in_pool([("img12.jpg", data)], options, settings, PoolShape(1, 1))
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.extend(results), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # the worker is loading models or attacking
    for child in multiprocessing.active_children():
        child.kill()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the pool hung on a dead worker"
    assert len(got) == 1
    index, outcome = got[0]  # type: ignore[misc]
    assert index == 0 and isinstance(outcome, WorkerDied)


def test_busy_workers_share_the_pool_threads_and_the_last_one_takes_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.jobs.protect import pool

    before = torch.get_num_threads()
    busy = multiprocessing.get_context("spawn").Value("i", 2)
    monkeypatch.setattr(pool, "_BUSY", busy)
    monkeypatch.setattr(pool, "_CPU_THREADS", 4)
    try:
        pool._share_threads(0, 10)
        assert torch.get_num_threads() == 2
        busy.value = 1  # the other worker finished and nothing is queued
        pool._share_threads(1, 10)
        assert torch.get_num_threads() == 4
        busy.value = 8  # more busy workers than threads: never below one
        pool._share_threads(2, 10)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
