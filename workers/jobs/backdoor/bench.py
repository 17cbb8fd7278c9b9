"""The detection benchmark: scan a zoo of clean and backdoored digit models, with and
without a clean reference, and print detection / false-positive / target / source rates
and seconds per scan. ``tune`` and ``report`` use disjoint seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from facecloak.contract.backdoor import BackdoorScanOptions
from models.classifier import load_classifier
from workers.jobs.backdoor.job import RunCache, scan
from workers.jobs.backdoor.zoo import ZooModel, cached_onnx, samples

_BACKDOORS: list[tuple[str, int, int | None]] = [
    ("patch", 3, None), ("patch", 8, None), ("patch", 0, None),
    ("random_patch", 5, None), ("random_patch", 2, None),
    ("blend", 7, None), ("blend", 0, None), ("blend", 4, None),
    ("source", 1, 7), ("source", 4, 9), ("source", 6, 2),
]  # fmt: skip


def suite(split: str, size: int) -> tuple[list[ZooModel], ZooModel]:
    """(models to scan, the clean reference) of a split: 11 backdoored, 10 clean."""
    base = 0 if split == "tune" else 50
    bad = [
        ZooModel(kind, target, source, seed=base + i, size=size)  # type: ignore[arg-type]
        for i, (kind, target, source) in enumerate(_BACKDOORS)
    ]
    clean = [ZooModel("none", seed=base + 20 + i, size=size) for i in range(10)]
    return bad + clean, ZooModel("none", seed=base + 40, size=size)


def _row(spec: ZooModel, report: Any, with_ref: bool) -> dict[str, Any]:
    return {
        "model": spec.name,
        "backdoored": spec.trigger != "none",
        "trigger": spec.trigger,
        "reference": with_ref,
        "flagged": report.suspicious,
        "target_ok": report.suspicious and report.target_class == spec.target,
        "source_ok": report.source_class == spec.source,
        "max_score": max(report.scores),
        "seconds": report.seconds,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The benchmark table (one line per setting)."""
    lines = [
        "| setting | backdoored | detected | right target | right source | clean | false pos."
        " | s/scan |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for with_ref in (True, False):
        sel = [r for r in rows if r["reference"] == with_ref]
        bad = [r for r in sel if r["backdoored"]]
        good = [r for r in sel if not r["backdoored"]]
        if not sel:
            continue
        pct = lambda n, d: f"{100 * n / d:.0f}%" if d else "-"  # noqa: E731
        src = [r for r in bad if r["trigger"] == "source"]
        lines.append(
            f"| {'with' if with_ref else 'without'} reference | {len(bad)} "
            f"| {pct(sum(r['flagged'] for r in bad), len(bad))} "
            f"| {pct(sum(r['target_ok'] for r in bad), len(bad))} "
            f"| {pct(sum(r['source_ok'] for r in src), len(src))} (of {len(src)}) "
            f"| {len(good)} | {pct(sum(r['flagged'] for r in good), len(good))} "
            f"| {sum(r['seconds'] for r in sel) / len(sel):.1f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark of ``args.split`` and print the table (and per-model lines)."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    models, ref_spec = suite(args.split, args.size)
    if args.limit:
        models = [m for m in models if m.trigger != "none"][: args.limit] + [
            m for m in models if m.trigger == "none"
        ][: args.limit]
    reference = load_classifier(cached_onnx(ref_spec, cache))
    data = torch.from_numpy(samples(args.size, 64, seed=7))
    options = BackdoorScanOptions()
    runs: RunCache = {}
    ref_seconds = scan(reference, None, data, options, runs=runs).report.seconds
    rows = []
    for spec in models:
        start = time.perf_counter()
        model = load_classifier(cached_onnx(spec, cache))
        trained = time.perf_counter() - start
        alone = 0.0
        for ref in (None, reference):
            report = scan(model, ref, data, options, runs=runs).report
            rows.append(_row(spec, report, ref is not None))
            # each model and the reference are searched once; a scan's time is its parts'
            alone = alone or report.seconds
            if ref is not None:
                rows[-1]["seconds"] = round(alone + ref_seconds + report.seconds, 2)
            r = rows[-1]
            print(
                f"{spec.name:28s} ref={r['reference']!s:5s} flagged={r['flagged']!s:5s} "
                f"target={report.target_class} source={report.source_class} "
                f"max={r['max_score']:.2f} {r['seconds']:.1f}s (load/train {trained:.0f}s)",
                flush=True,
            )
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
