"""Bounded loopback load test of a running gateway, with real face photos.

    python scripts/load_test.py --url http://127.0.0.1:8000 --api-key key-a \
        --jobs 200 --clients 20 --faces ../shared/data/faces/dev --out load.json

Submits ``--jobs`` one-photo protect jobs from ``--clients`` threads. Job ``n`` sends the
``n``-th photo of ``--faces`` (cycled; read at run time and, with ``--max-side``, downscaled
in memory; never written anywhere). The options are a short attack that still protects
(the legacy ``strength=high``, verify=false, no EOT: about 8 steps a face; an attack that
stops short of its margin fails the photo; ``--option k=v`` changes them). It waits for
every accepted job, then counts photos by outcome (protected, with each result downloaded
and decoded; ``no_face``; failed, by error code), jobs by status, and submit (202) and
end-to-end latency percentiles. The summary is printed and written to ``--out`` as JSON.
Only loopback targets are allowed; every loop is bounded in count and time.
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
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"
OPTIONS = {
    "strength": "high",
    "verify": "false",
    "eot_jpeg": "false",
    "eot_rescale": "false",
    "eot_makeup": "false",
}
TERMINAL = ("succeeded", "failed", "canceled")
MEDIA = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def loopback(url: str) -> bool:
    """True if ``url`` names a loopback address."""
    host = urlparse(url).hostname or ""
    try:
        return all(
            ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None)
        )
    except (socket.gaierror, ValueError):
        return False


def photos(folder: Path, max_side: int = 0) -> list[tuple[str, bytes, str]]:
    """(name, bytes, media type) of every JPEG/PNG in ``folder``, sorted by name; with
    ``max_side`` each is downscaled in memory to at most that many pixels (as a JPEG)."""
    out = []
    for path in sorted(folder.iterdir()):
        media = MEDIA.get(path.suffix.lower())
        if media is None:
            continue
        data = path.read_bytes()
        if max_side:
            with Image.open(io.BytesIO(data)) as src:
                im = src.convert("RGB")
            im.thumbnail((max_side, max_side))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=92)
            data, media = buf.getvalue(), "image/jpeg"
        out.append((path.name, data, media))
    return out


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` percentile in milliseconds (None when empty)."""
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def submit_all(args: argparse.Namespace, faces: list[tuple[str, bytes, str]]) -> dict[str, Any]:
    """Submit from ``--clients`` threads; the accepted job ids with their submit times."""
    lock = threading.Lock()
    accepted: dict[str, float] = {}
    submit_s: list[float] = []
    rejected: Counter[str] = Counter()
    counter = iter(range(args.jobs))

    def client() -> None:
        with httpx.Client(base_url=args.url, timeout=30, headers=args.headers) as c:
            while time.monotonic() < args.deadline:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                name, body, media = faces[n % len(faces)]
                start = time.monotonic()
                try:
                    r = c.post(
                        "/v1/protect",
                        data=args.options,
                        files=[("files", (name, body, media))],
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
                    rejected[key] += 1

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "accepted": accepted,
        "rejected": dict(rejected),
        "seconds": time.monotonic() - t0,
        "submit_s": submit_s,
    }


def wait_all(args: argparse.Namespace, accepted: dict[str, float]) -> dict[str, Any]:
    """Poll until every accepted job is terminal (or the deadline); job id -> (JSON, e2e s)."""
    done: dict[str, Any] = {}
    with httpx.Client(base_url=args.url, timeout=30, headers=args.headers) as c:
        while len(done) < len(accepted) and time.monotonic() < args.deadline:
            for job_id, start in accepted.items():
                if job_id in done:
                    continue
                try:
                    r = c.get(f"/v1/jobs/{job_id}")
                except httpx.HTTPError:
                    continue
                if r.status_code == 200 and r.json().get("status") in TERMINAL:
                    done[job_id] = (r.json(), time.monotonic() - start)
            time.sleep(0.5)
    return done


def result_ok(c: httpx.Client, job_id: str) -> bool:
    """The job's protected photo downloads and decodes as an image."""
    try:
        r = c.get(f"/v1/jobs/{job_id}/result")
        if r.status_code != 200:
            return False
        with Image.open(io.BytesIO(r.content)) as im:
            im.load()
        return True
    except (httpx.HTTPError, OSError):
        return False


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Submit, wait for everything accepted, count outcomes; returns the summary."""
    faces = photos(Path(args.faces), args.max_side)
    if not faces:
        raise SystemExit(f"load_test: no JPEG/PNG photos in {args.faces}")
    args.headers = {"X-API-Key": args.api_key}
    args.deadline = time.monotonic() + args.timeout
    sent = submit_all(args, faces)
    done = wait_all(args, sent["accepted"])
    items = [it for job, _ in done.values() for it in job["items"]]
    codes = Counter(
        (it.get("error") or {}).get("code", "?") for it in items if it["status"] == "failed"
    )
    protected = [i for i, (job, _) in done.items() if job["items"][0]["status"] == "protected"]
    with httpx.Client(base_url=args.url, timeout=60, headers=args.headers) as c:
        ok = sum(result_ok(c, i) for i in protected)
    jobs = Counter(job["status"] for job, _ in done.values())
    e2e = [s for _, s in done.values()]
    submit_s = sent["submit_s"]
    return {
        "jobs": args.jobs,
        "clients": args.clients,
        "faces": str(args.faces),
        "distinct_photos": len(faces),
        "photo_bytes": {"min": min(len(f[1]) for f in faces), "max": max(len(f[1]) for f in faces)},
        "options": args.options,
        "accepted": len(sent["accepted"]),
        "rejected": sent["rejected"],
        "lost": len(sent["accepted"]) - len(done),
        "job_status": {s: jobs.get(s, 0) for s in TERMINAL},
        "photos": {
            "protected": sum(it["status"] == "protected" for it in items),
            "results_ok": ok,
            "no_face": sum(it["status"] == "no_face" for it in items),
            "failed": sum(it["status"] == "failed" for it in items),
            "canceled": sum(it["status"] == "canceled" for it in items),
            "failed_codes": dict(codes),
        },
        "submit_seconds": round(sent["seconds"], 2),
        "submit_ms": {
            "p50": pct(submit_s, 50),
            "p95": pct(submit_s, 95),
            "p99": pct(submit_s, 99),
            "max": pct(submit_s, 100),
        },
        "end_to_end_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95), "max": pct(e2e, 100)},
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, refuse non-loopback targets, run, print and write the summary.

    Exit status 1 when a job was lost or a protected photo's result did not download.
    """
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default="key-a")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--faces", default=str(FACES), help="folder of face photos (JPEG/PNG)")
    p.add_argument("--max-side", type=int, default=0, help="downscale to this (0: as is)")
    p.add_argument("--option", action="append", default=[], help="protect option k=v")
    p.add_argument("--timeout", type=float, default=1800.0, help="whole run, seconds")
    p.add_argument("--out", "--json", dest="out", default=None, help="write the JSON here")
    p.add_argument("--run-id", default=str(int(time.time())))
    args = p.parse_args(argv)
    if not loopback(args.url):
        print("load_test: only loopback targets (127.0.0.0/8, ::1) are allowed", file=sys.stderr)
        return 2
    args.jobs = max(1, min(args.jobs, 5000))
    args.clients = max(1, min(args.clients, 100))
    if any("=" not in o for o in args.option):
        p.error("--option takes k=v")
    args.options = {**OPTIONS, **dict(o.split("=", 1) for o in args.option)}
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    bad = summary["lost"] or summary["photos"]["results_ok"] < summary["photos"]["protected"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
