"""Bad input, measured: one request per class of bad input to every route that takes input.

    python scripts/bad_inputs.py --url http://127.0.0.1:8000 --api-key key-a \
        --other-api-key key-b --out bad-inputs.json

Targets a running gateway (loopback only, the check of ``scripts/load_test.py``); starts
nothing. Every input is generated in memory: non-images, truncated and zero-byte files,
a decompression-bomb PNG, zip slips, nested and bomb zips, oversized uploads (sent with a
``Content-Length`` and chunked, over a raw socket that stops at the answer), bad options,
malformed JSON, private callback URLs, a reused ``Idempotency-Key``, unknown and other
tenants' job ids. Where a readable photo is wanted beside a bad one (the base of the
truncated JPEGs, the original of a verify) the first JPEG of ``--faces`` is read at run time,
never written anywhere; without one a synthetic JPEG stands in.

For each (class, route) it records the expected and the answered status and error code; a
class passes when both match. Classes a gateway accepts at the door and refuses per item
(``stage: item``) are followed to the end of their job, and every job this run created is
deleted at the end. The gateway's limits are not readable over the API: ``--max-upload-bytes``
and the other limit flags must match its settings (default: the settings' defaults). With
``--other-api-key`` (a second tenant) the other-tenant classes run too. Exit status 1 when a
class fails or anything answers 5xx. 6 wrong API keys are sent per run: the gateway
answers 429 past ``FACECLOAK_AUTH_FAILURES_PER_MINUTE`` (20) per address.

The classes are built by ``scripts/bad_input_cases/`` (one module per group); this script
runs them, prints the table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bad_input_cases/, load_test.py

from bad_input_cases.archives import zip_cases
from bad_input_cases.auth import auth_cases
from bad_input_cases.captcha import captcha_cases
from bad_input_cases.core import Case, Got, Limits, Result
from bad_input_cases.inputs import first_jpeg, noise_jpeg, tiny_onnx
from bad_input_cases.jobs import job_cases
from bad_input_cases.options import callback_cases, idempotency_cases, option_cases
from bad_input_cases.probe import Probe
from bad_input_cases.scans import model_cases
from bad_input_cases.uploads import size_cases, upload_cases
from load_test import loopback

from facecloak.settings import Settings

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"
CASES = (
    auth_cases,
    upload_cases,
    zip_cases,
    option_cases,
    callback_cases,
    idempotency_cases,
    model_cases,
    job_cases,
    captcha_cases,
    size_cases,
)
"""The case builders, in the order the cases are sent (and written)."""


def _default(name: str) -> int:
    value = Settings.model_fields[name].default
    assert isinstance(value, int)
    return value


def run_case(case: Case) -> Result:
    """Send one case; a transport error (or a fault of the case) is recorded as status None."""
    try:
        answer = case.send()
    except Exception as exc:
        answer = Got(0, None, f"{type(exc).__name__}: {exc}")
    ok = answer.status == case.status and answer.code == case.code
    return Result(
        case.name, case.route, case.stage, case.status, case.code,
        answer.status or None, answer.code, ok, "" if ok else answer.message,
    )  # fmt: skip


def run(p: Probe) -> dict[str, Any]:
    """Every case, then the clean-up; the summary."""
    cases = [case for build in CASES for case in build(p)]
    results: list[Result] = []
    started = time.monotonic()
    try:
        results = [run_case(case) for case in cases]
    finally:
        p.cleanup()
    server_errors = [r for r in results if r.status is not None and r.status >= 500]
    skipped = []
    if not p.other_key:
        skipped.append("another tenant's job: no --other-api-key")
    if p.onnx is None:
        skipped.append("bad data behind a valid model: no onnx package")
    return {
        "url": p.url,
        "limits": asdict(p.limits),
        "photo": p.photo[0],
        "classes": len({r.name for r in results}),
        "requests": len(results),
        "passed": sum(r.passed for r in results),
        "failed": [f"{r.name} / {r.route}" for r in results if not r.passed],
        "server_errors": len(server_errors),
        "skipped": skipped,
        "jobs_created_and_deleted": len(p.created),
        "seconds": round(time.monotonic() - started, 1),
        "results": [asdict(r) for r in results],
    }


def table(summary: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    rows = [("class", "route", "expected", "got", "ok")]
    for r in summary["results"]:
        item = " (item)" if r["stage"] == "item" else ""
        rows.append((
            r["name"], r["route"],
            f"{r['expected_status']} {r['expected_code']}{item}",
            f"{r['status']} {r['code']}", "yes" if r["passed"] else "NO",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(
        f"{summary['classes']} classes, {summary['requests']} requests: {summary['passed']} "
        f"passed, {len(summary['failed'])} failed, {summary['server_errors']} answered 5xx"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, refuse non-loopback targets, run, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default="key-a")
    p.add_argument("--other-api-key", default=None, help="a second tenant's key")
    p.add_argument("--faces", default=str(FACES), help="folder whose first JPEG is used")
    p.add_argument("--out", "--json", dest="out", default=None, help="write the JSON here")
    p.add_argument("--timeout", type=float, default=120.0, help="per request and per job, s")
    for name in ("max_upload_bytes", "max_request_bytes", "max_batch_photos", "max_steps",
                 "max_pixels", "zip_max_entries"):  # fmt: skip
        p.add_argument("--" + name.replace("_", "-"), type=int, default=_default(name))
    args = p.parse_args(argv)
    if not loopback(args.url):
        print("bad_inputs: only loopback targets (127.0.0.0/8, ::1) are allowed", file=sys.stderr)
        return 2
    limits = Limits(
        args.max_upload_bytes, args.max_request_bytes, args.max_batch_photos, args.max_steps,
        args.max_pixels, args.zip_max_entries,
    )  # fmt: skip
    photo = first_jpeg(Path(args.faces)) or ("synthetic.jpg", noise_jpeg())
    probe = Probe(args.url.rstrip("/"), args.api_key, args.other_api_key, limits, photo,
                  args.timeout, tiny_onnx())  # fmt: skip
    try:
        summary = run(probe)
    finally:
        probe.close()
    print(table(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["failed"] or summary["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
