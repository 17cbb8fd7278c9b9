"""The faults injected during a run, and the oversized chunked upload after it."""

from __future__ import annotations

import argparse
import re
import select
import socket
import time
from pathlib import Path
from typing import Any

from .stack import KEYS, Stack, wait

MULTIPART = "multipart/form-data; boundary=x"


def faults(args: argparse.Namespace, stack: Stack, state: dict[str, Any]) -> None:
    """Restart the gateway, SIGKILL a worker, restart Redis, each at its point in the run."""
    log: list[dict[str, Any]] = state["faults"]

    def at(what: str, ready: Any) -> None:
        wait(ready, args.timeout, f"trigger for {what}")
        log.append({"fault": what, "t": round(time.monotonic() - state["t0"], 1)})
        print(f"[{log[-1]['t']:7.1f} s] {what}", flush=True)

    try:
        _inject(args, stack, state, at)
    except Exception as exc:
        log.append({"fault": f"error: {exc!r}", "t": round(time.monotonic() - state["t0"], 1)})
    log.append({"fault": "all injected", "t": round(time.monotonic() - state["t0"], 1)})


def _inject(args: argparse.Namespace, stack: Stack, state: dict[str, Any], at: Any) -> None:
    at("gateway restart (SIGTERM)", lambda: sum(map(len, state["ids"].values())) >= args.jobs // 4)
    stack.restart_gateway()
    at("worker SIGKILL + replacement", lambda: state["done"] >= max(1, args.jobs // 10))
    state["faults"][-1]["killed"] = stack.kill_busy_worker(60)
    stack.start_worker("w3")
    at(
        f"redis restart ({'SIGKILL' if args.redis_kill else 'SIGTERM'}, AOF)",
        lambda: state["done"] >= args.jobs * 4 // 10,
    )
    stack.restart_redis(args.redis_down_s)


def gateway_rss(stack: Stack) -> int:
    """The gateway's resident set size in KiB."""
    assert stack.gateway is not None
    for line in Path(f"/proc/{stack.gateway.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def big_upload(stack: Stack, gib: float) -> dict[str, Any]:
    """A ``gib`` GiB chunked upload over a raw socket, stopped when the answer arrives.

    Returns the answer, the MiB sent before it came, and the gateway's RSS before and at peak.
    """
    sent, peak, stop_at, answer = 0, gateway_rss(stack), int(gib * 2**30), b""
    before, start, zeros = peak, time.monotonic(), b"\0" * 2**20
    head = b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/protect HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEYS['tenant-a']}\r\n"
            f"Content-Type: {MULTIPART}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for part in (head, *([zeros] * (stop_at // len(zeros))), b"\r\n--x--\r\n", b""):
                if select.select([sock], [], [], 0)[0]:
                    break  # answered before the end of the body
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                sent += len(part)
                peak = max(peak, gateway_rss(stack))
        except OSError:
            pass  # the gateway closed or stopped reading: its answer says why
        try:
            answer = sock.recv(65536)
        except OSError as exc:
            answer = type(exc).__name__.encode()
    code = re.search(rb'"code":\s*"([a-z_]+)"', answer)
    return {
        "offered_gib": gib,
        "status": answer.split(b"\r\n", 1)[0].decode(errors="replace").removeprefix("HTTP/1.1 "),
        "code": code[1].decode() if code else "", "sent_before_answer_mib": round(sent / 2**20, 1),
        "rss_before_mib": before // 1024, "rss_peak_mib": max(peak, gateway_rss(stack)) // 1024,
        "seconds": round(time.monotonic() - start, 1),
    }  # fmt: skip
