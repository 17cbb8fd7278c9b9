"""The clients' side: webhook receivers, submitting clients and polling the job list."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .stack import KEYS, Stack

TERMINAL = ("succeeded", "failed", "canceled")


class Receivers:
    """Two local webhook receivers: one answers 204 at once, the other never answers."""

    def __init__(self) -> None:
        self.got: list[tuple[str, float]] = []  # (webhook-id, arrival epoch seconds)
        self.hung = 0
        self.stopping = threading.Event()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/hang":
                    rec.hung += 1
                    rec.stopping.wait(120)
                    return
                rec.got.append((self.headers.get("webhook-id", ""), time.time()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()


def submit_all(
    args: argparse.Namespace, stack: Stack, rec: Receivers, state: dict[str, Any]
) -> None:
    """``args.clients`` threads submit ``args.jobs`` jobs, retrying with the same key."""
    pics = state["photos"]
    lock = threading.Lock()
    counter = iter(range(args.jobs))
    options = dict(kv.split("=", 1) for kv in args.option)

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while (n := _next(counter, lock)) is not None:
                tenant = "tenant-b" if args.hang_every and n % args.hang_every == 0 else "tenant-a"
                hook = rec.url + ("/hang" if tenant == "tenant-b" else "/ok")
                name, body = pics[n % len(pics)]
                headers = {"X-API-Key": KEYS[tenant], "Idempotency-Key": f"fi-{state['run']}-{n}"}
                deadline = time.monotonic() + args.submit_timeout
                while time.monotonic() < deadline:
                    try:
                        r = c.post(
                            stack.url + "/v1/protect", headers=headers,
                            data={**options, "callback_url": hook},
                            files=[("files", (name, body, "image/jpeg"))],
                        )  # fmt: skip
                    except httpx.HTTPError as exc:
                        code = type(exc).__name__
                    else:
                        code = str(r.status_code)
                        if r.status_code in (200, 201, 202):
                            with lock:
                                state["ids"].setdefault(n, set()).add(r.json()["id"])
                                state["tenant"][r.json()["id"]] = tenant
                            break
                    with lock:
                        state["retries"][code] = state["retries"].get(code, 0) + 1
                    if code.isdigit() and int(code) < 500 and code != "429":
                        with lock:
                            state["refused"] += 1
                        break  # refused for good
                    time.sleep(0.5)
                else:
                    with lock:
                        state["gave_up"] += 1

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _next(counter: Iterator[int], lock: threading.Lock) -> int | None:
    with lock:
        return next(counter, None)


def poll(stack: Stack, tenant: str) -> dict[str, dict[str, Any]]:
    """Every job of ``tenant`` via the list endpoint (empty while the gateway is down)."""
    jobs: dict[str, dict[str, Any]] = {}
    before: float | None = None
    try:
        with httpx.Client(base_url=stack.url, timeout=30) as c:
            for _ in range(100):
                params: dict[str, Any] = {"limit": 200} | ({"before": before} if before else {})
                r = c.get("/v1/jobs", params=params, headers={"X-API-Key": KEYS[tenant]})
                if r.status_code != 200:
                    return jobs
                body = r.json()
                jobs.update({j["id"]: j for j in body["jobs"]})
                if not (before := body["next_before"]):
                    break
    except httpx.HTTPError:
        pass
    return jobs
