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

The stack, its traffic, the faults and the report are in ``scripts/fault_harness/`` (one
module each); this script parses the flags, runs them and prints the table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fault_harness/, load_test.py
import load_test  # the load test's job options
from fault_harness.faults import big_upload, faults
from fault_harness.report import summarize, table
from fault_harness.stack import Stack
from fault_harness.traffic import TERMINAL, Receivers, poll, submit_all

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces" / "test"


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
