"""Fault injection against a real distributed stack: redis-server, gateway, Celery workers.

    python scripts/fault_injection.py --jobs 200 --clients 20 --json fault.json

Starts a throwaway ``redis-server`` (AOF, fsync always), a distributed gateway (``facecloak
serve``) and two workers (``facecloak worker``) in a temporary folder, then submits ``--jobs``
one-photo protect jobs (real face photos from ``../shared/data/faces/test``, downscaled in
memory) from ``--clients`` threads, each with its own ``Idempotency-Key`` and retried on
transport errors and 5xx. Meanwhile it restarts the gateway, SIGKILLs a worker (and starts
a replacement) and restarts Redis. Every ``--hang-every``-th job belongs to a second tenant
whose webhook receiver never answers; the others call a receiver that answers at once.
It waits until every accepted job is terminal or none ended for ``--recovery-s``, then
counts lost, duplicated and non-terminal jobs, checks every result, measures webhook
latency and gateway RSS under a 1 GiB chunked upload, and prints a Markdown table
(``--json``: the raw figures). Loopback only; every process is killed on exit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_test  # the load test's job options

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces" / "test"
KEYS = {"tenant-a": "key-a", "tenant-b": "key-b"}
TERMINAL = ("succeeded", "failed", "canceled")
MULTIPART = "multipart/form-data; boundary=x"


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def photos(folder: Path, side: int) -> list[tuple[str, bytes]]:
    """Every photo in ``folder``, downscaled in memory to at most ``side`` px, as JPEG."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        with Image.open(path) as src:
            im = src.convert("RGB")
        im.thumbnail((side, side))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=92)
        out.append((path.stem + ".jpg", buf.getvalue()))
    return out


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


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` percentile (nearest rank) of ``values``, or None."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 2)


def summarize(
    args: argparse.Namespace, stack: Stack, rec: Receivers, state: dict[str, Any]
) -> dict[str, Any]:
    """Count outcomes, check each result, webhook latency and duplicated result blobs."""
    jobs = poll(stack, "tenant-a") | poll(stack, "tenant-b")
    accepted = {i for ids in state["ids"].values() for i in ids}
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        for i in accepted - set(jobs):  # the list's cursor may skip ties: ask each one
            r = c.get(f"/v1/jobs/{i}", headers={"X-API-Key": KEYS[state["tenant"][i]]})
            if r.status_code == 200:
                jobs[i] = r.json()
    statuses = {i: jobs[i]["status"] if i in jobs else "missing" for i in accepted}
    ok = [i for i in accepted if statuses[i] == "succeeded"]
    no_face = [i for i in ok if all(it["status"] == "no_face" for it in jobs[i]["items"])]
    good = 0
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        for i in set(ok) - set(no_face):
            r = c.get(f"/v1/jobs/{i}/result", headers={"X-API-Key": KEYS[state["tenant"][i]]})
            good += r.status_code == 200 and Image.open(io.BytesIO(r.content)).format == "JPEG"
    blobs: dict[str, list[str]] = {}  # job/out/index -> its result files
    for f in (stack.tmp / "blobs" / "jobs").glob("*/out/*"):
        blobs.setdefault(f"{f.parent.parent.name}/{f.name.split('-')[0]}", []).append(f.name)
    extra = {k: v for k, v in blobs.items() if len(v) > 1}
    hooks = {h for h, _ in rec.got}
    first: dict[str, float] = {}
    for h, t in rec.got:
        first[h] = min(t, first.get(h, t))
    lat = []
    for i in accepted:
        if f"msg_{i}" in first and jobs.get(i, {}).get("finished_at"):
            done = jobs[i]["finished_at"].replace("Z", "+00:00")
            lat.append(first[f"msg_{i}"] - _epoch(done))
    good_tenant = [
        i for i in accepted if state["tenant"][i] == "tenant-a" and statuses[i] in TERMINAL
    ]
    return {
        "jobs": args.jobs, "clients": args.clients, "options": args.option,
        "accepted": len(accepted), "gave_up_submitting": state["gave_up"],
        "refused": state["refused"],
        "submit_retries": state["retries"],
        "duplicate_jobs": sum(len(ids) - 1 for ids in state["ids"].values()),
        "protected": len(ok) - len(no_face), "results_ok": good, "no_face": len(no_face),
        "failed": sum(s == "failed" for s in statuses.values()),
        "failed_codes": sorted({(jobs[i].get("error") or {}).get("code", "?") for i in accepted
                                if statuses[i] == "failed"}),
        "lost": sum(s == "missing" for s in statuses.values()),
        "non_terminal": sum(s not in TERMINAL and s != "missing" for s in statuses.values()),
        "retried_items": sorted(
            f"{it['status']} after {it['attempts']} runs"
            for i in accepted if i in jobs for it in jobs[i]["items"] if it.get("attempts", 0) > 1
        ),
        "extra_result_blobs": extra,
        "webhooks_good_tenant": {"jobs_terminal": len(good_tenant), "delivered": len(hooks),
                                 "deliveries": len(rec.got), "hung_attempts": rec.hung,
                                 "latency_s_p50": pct(lat, 50), "latency_s_p95": pct(lat, 95),
                                 "latency_s_max": pct(lat, 100)},
        "faults": state["faults"], "seconds": round(time.monotonic() - state["t0"], 1),
        "recovery_s": args.recovery_s, "loadavg_start": state["load"],
        "loadavg_end": os.getloadavg(),
    }  # fmt: skip


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def table(s: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    w = s["webhooks_good_tenant"]
    rows = [
        ("jobs submitted / clients", f"{s['jobs']} / {s['clients']}"),
        ("accepted (202)", s["accepted"]),
        ("refused (4xx) / gave up retrying", f"{s['refused']} / {s['gave_up_submitting']}"),
        ("submit retries (by answer)", s["submit_retries"] or "none"),
        ("duplicate jobs (one key, two ids)", s["duplicate_jobs"]),
        ("succeeded, protected", f"{s['protected']} ({s['results_ok']} results checked OK)"),
        ("succeeded, every photo no_face", s["no_face"]),
        ("failed", f"{s['failed']} {s['failed_codes'] or ''}"),
        ("lost (accepted, unknown to the gateway)", s["lost"]),
        ("non-terminal after the recovery bound", s["non_terminal"]),
        ("photos run more than once: final status", ", ".join(s["retried_items"]) or "none"),
        ("photos with more than one result file in storage", len(s["extra_result_blobs"])),
        ("webhooks, good tenant: delivered / deliveries / terminal jobs",
         f"{w['delivered']} / {w['deliveries']} / {w['jobs_terminal']}"),
        ("webhook latency, good tenant (p50 / p95 / max s)",
         f"{w['latency_s_p50']} / {w['latency_s_p95']} / {w['latency_s_max']}"),
        ("hanging receiver: attempts held", w["hung_attempts"]),
    ]  # fmt: skip
    if "upload" in s:
        u = s["upload"]
        rows.append((
            f"{u['offered_gib']} GiB chunked upload: answer, MiB sent first, RSS before -> peak",
            f"{u['status']} {u['code']}, {u['sent_before_answer_mib']} MiB, "
            f"{u['rss_before_mib']} -> {u['rss_peak_mib']} MiB",
        ))  # fmt: skip
    rows.append(
        (
            "faults (s into the run)",
            ", ".join(f"{f['fault']} @ {f['t']} {f.get('killed', '')}" for f in s["faults"]),
        )
    )
    rows.append(("run time (s)", s["seconds"]))
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the stack, inject faults, wait, count, report; always clean up."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--faces", type=Path, default=FACES)
    p.add_argument("--side", type=int, default=300, help="downscale photos to this many px")
    p.add_argument("--option", action="append", default=None, help="protect option k=v")
    p.add_argument("--hang-every", type=int, default=10, help="every Nth job: hanging webhook")
    p.add_argument("--webhook-timeout", type=float, default=5.0)
    p.add_argument("--recovery-s", type=float, default=120.0, help="stop when none ends this long")
    p.add_argument("--timeout", type=float, default=1800.0, help="whole run bound, seconds")
    p.add_argument("--submit-timeout", type=float, default=120.0, help="per job, retries included")
    p.add_argument("--redis-down-s", type=float, default=2.0)
    p.add_argument("--redis-kill", action="store_true", help="SIGKILL Redis (default SIGTERM)")
    p.add_argument("--upload-gib", type=float, default=1.0, help="0: skip the chunked upload")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder and logs")
    args = p.parse_args(argv)
    args.option = args.option or [f"{k}={v}" for k, v in load_test.OPTIONS.items()]
    state: dict[str, Any] = {
        "photos": photos(args.faces, args.side), "ids": {}, "tenant": {},
        "retries": {}, "gave_up": 0, "refused": 0, "faults": [], "done": 0, "run": int(time.time()),
        "load": os.getloadavg(),
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="facecloak-fi-"))
    stack, rec = Stack(tmp, args.webhook_timeout, args.redis_kill), Receivers()
    try:
        stack.start_redis()
        stack.start_gateway()
        stack.start_worker("w1")
        stack.start_worker("w2")
        state["t0"] = time.monotonic()
        threading.Thread(target=faults, args=(args, stack, state), daemon=True).start()
        submitter = threading.Thread(target=submit_all, args=(args, stack, rec, state))
        submitter.start()
        last, last_change, deadline = -1, time.monotonic(), state["t0"] + args.timeout
        while time.monotonic() < deadline:
            time.sleep(3)
            jobs = poll(stack, "tenant-a") | poll(stack, "tenant-b")
            state["done"] = max(state["done"], sum(j["status"] in TERMINAL for j in jobs.values()))
            accepted = sum(map(len, state["ids"].values()))
            if state["done"] != last:
                last, last_change = state["done"], time.monotonic()
                print(f"[{time.monotonic() - state['t0']:7.1f} s] {accepted} accepted, "
                      f"{state['done']} terminal", flush=True)  # fmt: skip
            injected = [f for f in state["faults"] if f["fault"] == "all injected"]
            idle = time.monotonic() - last_change > args.recovery_s
            if injected and not submitter.is_alive() and (state["done"] >= accepted or idle):
                break
        submitter.join(args.submit_timeout)
        summary = summarize(args, stack, rec, state)
        if args.upload_gib > 0:
            summary["upload"] = big_upload(stack, args.upload_gib)
    except BaseException:
        for log in sorted(tmp.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        raise
    finally:
        rec.close()
        stack.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    bad = summary["lost"] + summary["non_terminal"] + summary["duplicate_jobs"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
