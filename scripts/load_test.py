"""Bounded loopback load test of a running gateway.

    python scripts/load_test.py --url http://127.0.0.1:8000 --api-key key-a \
        --jobs 200 --clients 20 --photo-kb 2048

Submits ``--jobs`` one-photo jobs from ``--clients`` threads (each a synthetic photo of about
``--photo-kb`` KiB, options ``steps=1, verify=false``), waits for every accepted job, and
prints accepted / rejected / completed / failed / lost counts with submit (202) and
end-to-end latency percentiles, as text and as JSON (``--json``). Only loopback targets are
allowed; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image


def loopback(url: str) -> bool:
    """True if ``url`` names a loopback address."""
    host = urlparse(url).hostname or ""
    try:
        return all(
            ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None)
        )
    except (socket.gaierror, ValueError):
        return False


def photo(kib: int, seed: int) -> bytes:
    """A noisy PNG of roughly ``kib`` KiB (noise does not compress)."""
    side = max(16, int((kib * 1024 / 3) ** 0.5))
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` percentile in milliseconds (None when empty)."""
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Submit, then wait for everything accepted; returns the summary."""
    body = photo(args.photo_kb, 0)
    headers = {"X-API-Key": args.api_key}
    lock = threading.Lock()
    accepted: dict[str, float] = {}
    submit_s: list[float] = []
    rejected: dict[str, int] = {}
    counter = iter(range(args.jobs))
    deadline = time.monotonic() + args.timeout

    def client() -> None:
        with httpx.Client(base_url=args.url, timeout=30, headers=headers) as c:
            while time.monotonic() < deadline:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                start = time.monotonic()
                try:
                    r = c.post(
                        "/v1/protect",
                        data={"steps": "1", "verify": "false"},
                        files=[("files", (f"load-{n}.png", body, "image/png"))],
                        headers={"Idempotency-Key": f"load-{args.run_id}-{n}"},
                    )
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                else:
                    key = str(r.status_code)
                    if r.status_code == 202:
                        with lock:
                            accepted[r.json()["id"]] = start
                            submit_s.append(time.monotonic() - start)
                        continue
                with lock:
                    rejected[key] = rejected.get(key, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submitted_in = time.monotonic() - t0
    done: dict[str, str] = {}
    e2e: list[float] = []
    with httpx.Client(base_url=args.url, timeout=30, headers=headers) as c:
        while len(done) < len(accepted) and time.monotonic() < deadline:
            for job_id, start in accepted.items():
                if job_id in done:
                    continue
                try:
                    r = c.get(f"/v1/jobs/{job_id}")
                except httpx.HTTPError:
                    continue
                status = r.json().get("status") if r.status_code == 200 else None
                if status in ("succeeded", "failed", "canceled"):
                    done[job_id] = status
                    e2e.append(time.monotonic() - start)
            time.sleep(0.5)
    statuses = list(done.values())
    return {
        "jobs": args.jobs,
        "clients": args.clients,
        "photo_bytes": len(body),
        "accepted": len(accepted),
        "rejected": rejected,
        "completed": statuses.count("succeeded"),
        "failed": statuses.count("failed"),
        "canceled": statuses.count("canceled"),
        "lost": len(accepted) - len(done),
        "submit_seconds": round(submitted_in, 2),
        "submit_ms": {
            "p50": pct(submit_s, 50),
            "p95": pct(submit_s, 95),
            "p99": pct(submit_s, 99),
            "max": pct(submit_s, 100),
        },
        "end_to_end_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95), "max": pct(e2e, 100)},
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, refuse non-loopback targets, run, print."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default="key-a")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--photo-kb", type=int, default=64)
    p.add_argument("--timeout", type=float, default=600.0, help="whole run, seconds")
    p.add_argument("--json", default=None, help="also write the summary here")
    p.add_argument("--run-id", default=str(int(time.time())))
    args = p.parse_args(argv)
    if not loopback(args.url):
        print("load_test: only loopback targets (127.0.0.0/8, ::1) are allowed", file=sys.stderr)
        return 2
    args.jobs = min(args.jobs, 5000)
    args.clients = max(1, min(args.clients, 100))
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    return 0 if summary["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
