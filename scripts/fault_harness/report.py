"""Counting a run's outcomes and printing them as a Markdown table."""

from __future__ import annotations

import argparse
import io
import os
import time
from typing import Any

import httpx
from PIL import Image

from .stack import KEYS, Stack
from .traffic import TERMINAL, Receivers, poll


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
