"""The stack under test: redis-server, one gateway and workers as process groups."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
KEYS = {"tenant-a": "key-a", "tenant-b": "key-b"}


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Stack:
    """redis-server, one gateway and workers as process groups in ``tmp``."""

    def __init__(self, tmp: Path, webhook_timeout: float, redis_kill: bool) -> None:
        self.tmp, self.redis_kill = tmp, redis_kill
        self.redis_port, self.port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = dict(os.environ)
        self.env.update(
            FACECLOAK_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            FACECLOAK_JOBSTORE_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            FACECLOAK_STORAGE_URL=str(tmp / "blobs"),
            FACECLOAK_DATA_DIR=str(tmp / "data"),
            FACECLOAK_API_KEYS=",".join(f"{k}:{t}" for t, k in KEYS.items()),
            FACECLOAK_WEBHOOK_SECRETS="tenant-a:secret-a,tenant-b:secret-b",
            FACECLOAK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
            FACECLOAK_WEBHOOK_TIMEOUT_SECONDS=str(webhook_timeout),
            FACECLOAK_LEASE_SECONDS="10",
            FACECLOAK_REAPER_INTERVAL_SECONDS="1",
            FACECLOAK_MAX_ATTEMPTS="3",
            FACECLOAK_QUEUED_REDISPATCH_SECONDS="60",
            FACECLOAK_RATE_LIMIT_PER_MINUTE="100000",
            FACECLOAK_ALLOW_DOWNLOAD="false",
            FACECLOAK_TORCH_THREADS="1",
            OMP_NUM_THREADS="1",
        )

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("ab") as out:
            proc = subprocess.Popen(
                args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start_redis(self) -> None:
        exe = shutil.which("redis-server") or "redis-server"
        args = [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.tmp)]
        self.redis = self._spawn(args, "redis.log")
        wait(lambda: _connects(self.redis_port), 20, "redis-server")

    def start_gateway(self) -> None:
        cli = [sys.executable, "-m", "facecloak.cli", "serve", "--port", str(self.port)]
        self.gateway = self._spawn([*cli, "--log-level", "warning"], "gateway.log")
        wait(lambda: _healthy(self.url), 120, "gateway")

    def start_worker(self, name: str) -> None:
        cli = [sys.executable, "-m", "facecloak.cli", "worker", "--queues", "gpu,cpu"]
        args = [*cli, "--name", f"{name}@%h", "--log-level", "INFO"]
        self.workers[name] = self._spawn(args, f"{name}.log")

    def kill_busy_worker(self, within: float) -> str:
        """SIGKILL (whole process group) a worker that is running a photo.

        Running: its log shows a ``run_item`` task received and not finished, and its pool
        used CPU in the last half second. After ``within`` seconds, any worker is killed.
        """
        deadline = time.monotonic() + within
        while True:
            ticks = {n: _pool_ticks(p.pid) for n, p in self.workers.items()}
            time.sleep(0.5)
            busy = [
                n for n, p in self.workers.items()
                if _pool_ticks(p.pid) - ticks[n] >= 5 and _running(self.tmp / f"{n}.log")
            ]  # fmt: skip
            if busy or time.monotonic() > deadline:
                name = (busy or sorted(self.workers))[0]
                stop(self.workers.pop(name), signal.SIGKILL)
                return name + (" (mid-photo)" if busy else " (none seen mid-photo)")

    def restart_redis(self, down_s: float) -> None:
        assert self.redis is not None
        stop(self.redis, signal.SIGKILL if self.redis_kill else signal.SIGTERM)
        time.sleep(down_s)
        self.start_redis()

    def restart_gateway(self) -> None:
        assert self.gateway is not None
        stop(self.gateway, signal.SIGTERM)
        self.start_gateway()

    def close(self) -> None:
        """Stop everything started: SIGTERM each group, then SIGKILL what is left."""
        for proc in self.procs:
            stop(proc, signal.SIGTERM, grace=15)


def stop(proc: subprocess.Popen[bytes], sig: int, grace: float = 15) -> None:
    """Send ``sig`` to ``proc``'s process group; SIGKILL it if still alive after ``grace``."""
    if proc.poll() is not None:
        return
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, s)
            proc.wait(grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _pool_ticks(pid: int) -> int:
    """CPU clock ticks used so far by the children (the Celery pool) of ``pid``."""
    total = 0
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        pass
    return total


def _running(log: Path) -> bool:
    """True if the worker log shows a photo task received and not yet finished."""
    open_tasks: set[str] = set()
    for m in re.finditer(
        r"Task facecloak\.run_item\[([\w-]+)\] (\w+)", log.read_text("utf-8", "replace")
    ):
        (open_tasks.add if m[2] == "received" else open_tasks.discard)(m[1])
    return bool(open_tasks)


def _connects(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait(ok: Any, timeout: float, what: str) -> None:
    """Poll ``ok()`` until true, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")
        time.sleep(0.2)
