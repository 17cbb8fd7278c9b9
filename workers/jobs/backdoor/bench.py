"""The detection benchmark: scan a zoo of clean and backdoored models of each task (digits,
glyphs), with and without a clean reference of the same task, and print detection /
false-positive / target / source rates and seconds per scan, per task and over all tasks.
``tune``, ``report`` and ``check`` use disjoint seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facecloak.contract.backdoor import BackdoorScanOptions
from models.classifier import load_classifier
from workers.jobs.backdoor.job import ModelRun, RunCache, scan
from workers.jobs.backdoor.tasks import TASKS, TaskName
from workers.jobs.backdoor.zoo import ZooModel, cached_onnx, evaluate, samples

Backdoors = list[tuple[str, int, int | None]]
_BACKDOORS: dict[TaskName, Backdoors] = {
    "digits": [
        ("patch", 3, None), ("patch", 8, None), ("patch", 0, None),
        ("random_patch", 5, None), ("random_patch", 2, None),
        ("blend", 7, None), ("blend", 0, None), ("blend", 4, None),
        ("source", 1, 7), ("source", 4, 9), ("source", 6, 2),
    ],
    # other targets and source -> target pairs (class k is the letter tasks.LETTERS[k])
    "glyphs": [
        ("patch", 2, None), ("patch", 6, None), ("patch", 9, None),
        ("random_patch", 1, None), ("random_patch", 7, None),
        ("blend", 3, None), ("blend", 5, None), ("blend", 8, None),
        ("source", 0, 4), ("source", 5, 1), ("source", 9, 3),
    ],
}  # fmt: skip
_SEED_BASE: dict[TaskName, int] = {"digits": 0, "glyphs": 100}
"""First seed of a task's ``tune`` split; its ``report`` split starts 50 later."""
SPLIT_OFFSETS = {"tune": 0, "report": 50, "check": 200}
"""Seed offset of each split from the task's base. ``check`` (session 11) is a fresh split
that no choice was made on, run once to confirm the ``report`` figures after they had been
seen."""


def suite(split: str, size: int, task: TaskName = "digits") -> tuple[list[ZooModel], ZooModel]:
    """(models to scan, the clean reference) of a task's split: 11 backdoored, 10 clean."""
    base = _SEED_BASE[task] + SPLIT_OFFSETS[split]
    bad = [
        ZooModel(kind, target, source, seed=base + i, size=size, task=task)  # type: ignore[arg-type]
        for i, (kind, target, source) in enumerate(_BACKDOORS[task])
    ]
    clean = [ZooModel("none", seed=base + 20 + i, size=size, task=task) for i in range(10)]
    return bad + clean, ZooModel("none", seed=base + 40, size=size, task=task)


def _row(spec: ZooModel, report: Any, with_ref: bool) -> dict[str, Any]:
    return {
        "task": spec.task,
        "model": spec.name,
        "backdoored": spec.trigger != "none",
        "trigger": spec.trigger,
        "reference": with_ref,
        "flagged": report.suspicious,
        "target_ok": report.suspicious and report.target_class == spec.target,
        "source_ok": report.source_class == spec.source,
        "max_score": max(report.scores),
        "target_score": report.scores[spec.target] if spec.trigger != "none" else None,
        "seconds": report.seconds,
    }


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.0f}%" if d else "-"


def _groups(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(label, rows) for each task in the rows and, with several, for all of them."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    groups = [(t, [r for r in rows if r["task"] == t]) for t in tasks]
    return groups + ([("all", rows)] if len(tasks) > 1 else [])


def table(rows: list[dict[str, Any]]) -> str:
    """The benchmark table: one line per task and setting, then all tasks together."""
    lines = [
        "| task | setting | backdoored | detected | right target | right source | clean"
        " | false pos. | s/scan |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, group in _groups(rows):
        for with_ref in (True, False):
            sel = [r for r in group if r["reference"] == with_ref]
            if not sel:
                continue
            bad = [r for r in sel if r["backdoored"]]
            good = [r for r in sel if not r["backdoored"]]
            src = [r for r in bad if r["trigger"] == "source"]
            lines.append(
                f"| {label} | {'with' if with_ref else 'without'} reference | {len(bad)} "
                f"| {_pct(sum(r['flagged'] for r in bad), len(bad))} "
                f"| {_pct(sum(r['target_ok'] for r in bad), len(bad))} "
                f"| {_pct(sum(r['source_ok'] for r in src), len(src))} (of {len(src)}) "
                f"| {len(good)} | {_pct(sum(r['flagged'] for r in good), len(good))} "
                f"| {sum(r['seconds'] for r in sel) / len(sel):.1f} |"
            )
    return "\n".join(lines)


def trigger_table(rows: list[dict[str, Any]]) -> str:
    """Right targets per trigger kind (clean: models flagged), with / without a reference."""
    lines = ["| task | trigger | models | with reference | without |", "|---|---|---|---|---|"]
    for label, group in _groups(rows):
        for kind in dict.fromkeys(r["trigger"] for r in group):
            sel = [r for r in group if r["trigger"] == kind]
            hit: Callable[[dict[str, Any]], bool] = (
                (lambda r: bool(r["flagged"])) if kind == "none" else (lambda r: r["target_ok"])
            )
            counts = [sum(hit(r) for r in sel if r["reference"] == w) for w in (True, False)]
            name = "clean (flagged)" if kind == "none" else kind
            models = sum(1 for r in sel if r["reference"])
            lines.append(f"| {label} | {name} | {models} | {counts[0]} | {counts[1]} |")
    return "\n".join(lines)


def _signals(run: ModelRun) -> dict[str, Tensor]:
    """The raw signals a scan scores (for re-scoring a split without searching again)."""
    out = {"steps": run.bias.steps}
    if run.triggers is not None:
        out["norms"] = run.triggers.norms
        out["stamp_success"] = run.triggers.stamp_success
        out["stamp_trials"] = run.triggers.stamp_trials
    if run.pairs is not None:
        out["pair_norms"] = run.pairs.norms
    return out


def _bench_task(
    task: TaskName,
    args: argparse.Namespace,
    options: BackdoorScanOptions,
    cache: Path,
    signals: dict[str, dict[str, Tensor]],
) -> list[dict[str, Any]]:
    models, ref_spec = suite(args.split, args.size, task)
    if args.limit:
        models = [m for m in models if m.trigger != "none"][: args.limit] + [
            m for m in models if m.trigger == "none"
        ][: args.limit]
    reference = load_classifier(cached_onnx(ref_spec, cache))
    data = torch.from_numpy(samples(args.size, 64, seed=7, task=task))
    runs: RunCache = {}
    ref_seconds = scan(reference, None, data, options, runs=runs).report.seconds
    signals[f"reference:{task}"] = _signals(runs[id(reference)][1])
    rows = []
    for spec in models:
        start = time.perf_counter()
        model = load_classifier(cached_onnx(spec, cache))
        trained = time.perf_counter() - start
        accuracy, success = evaluate(model, spec, normalise=False)
        alone = 0.0
        for ref in (None, reference):
            report = scan(model, ref, data, options, runs=runs).report
            rows.append(_row(spec, report, ref is not None))
            # each model and the reference are searched once; a scan's time is its parts'
            alone = alone or report.seconds
            if ref is not None:
                rows[-1]["seconds"] = round(alone + ref_seconds + report.seconds, 2)
            r = rows[-1]
            r["accuracy"], r["attack_success"] = round(accuracy, 3), round(success, 3)
            print(
                f"{spec.name:35s} ref={r['reference']!s:5s} flagged={r['flagged']!s:5s} "
                f"target={report.target_class} source={report.source_class} "
                f"max={r['max_score']:.2f} {r['seconds']:.1f}s "
                f"(acc {accuracy:.2f} asr {success:.2f}, load/train {trained:.0f}s)",
                flush=True,
            )
        signals[spec.name] = _signals(runs[id(model)][1])
    return rows


def main(args: argparse.Namespace) -> int:
    """Run the benchmark of ``args.split`` on ``args.task`` (default: every task) and print
    the tables (and per-model lines)."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    task = str(getattr(args, "task", "all"))
    tasks = [t for t in TASKS if task in ("all", t)]
    rows: list[dict[str, Any]] = []
    signals: dict[str, dict[str, Tensor]] = {}
    for name in tasks:
        rows += _bench_task(name, args, BackdoorScanOptions(), Path(args.cache), signals)
        if getattr(args, "signals", None):  # written after each task: a long run keeps some
            torch.save(signals, args.signals)
    print(table(rows))
    print()
    print(trigger_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
