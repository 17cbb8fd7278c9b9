"""The protection benchmark (``facecloak bench``): PSR and visibility, white-box and held out.

Protocol: every photo of a person with at least two photos is a probe once; that
person's other photos are enrolled. A probe counts when it was matched before
protection (best similarity to an enrolled photo reaches the model's threshold at
FAR 0.1%); it is protected when, after the whole protect job (detection, attack, saving
in its own format, verification), re-reading, re-detecting and re-aligning the saved
photo (and after each real-world condition and attacker clean-up), no enrolled photo
matches it. A photo the job refuses to write (``failed``, ``no_face``) leaves its owner
with the original, so it counts as unprotected. Each attack configuration leaves one
model out (leave-one-out), so every model is measured both white-box and held-out.

Visibility per probe face comes from the job's own report (FLIP, SSIM, PSNR, JPEG
equivalent on the saved photo) next to the FLIP of real JPEG q90/q75/q50 re-saves of the
same original face, so a table can say "as visible as". Time per face is the wall time of
the protect call (models are loaded before timing).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facecloak.contract.options import ProtectOptions
from facecloak.contract.reports import FaceVisibility, ProtectReport
from facecloak.images import decode_image
from workers.jobs import conditions
from workers.jobs.analysis import box_iou, embed, match_faces
from workers.jobs.faceset import LabelledPhoto, load_faceset
from workers.jobs.protect import protect_photo
from workers.jobs.quality import psnr
from workers.jobs.runtime import Runtime
from workers.jobs.verify import scaled_face
from workers.jobs.visibility import jpeg_flips

JPEG_LEVELS: tuple[int, ...] = (90, 75, 50)
Similarity = dict[str, float | None]  # model -> best similarity to an enrolled photo


@dataclass
class BenchConfig:
    """What to run."""

    faces: Path
    models: list[str] = field(default_factory=lambda: ["w600k_mbf", "sface", "facenet"])
    strength: str = "medium"
    leave_one_out: bool = True
    conditions: tuple[str, ...] = conditions.CONDITIONS
    limit: int | None = None
    seed: int = 0
    eps: float | None = None
    """L-inf budget in 1/255 units instead of the preset's (frontier points)."""
    steps: int | None = None
    """Maximum attack steps instead of the preset's."""


@dataclass
class _Probe:
    """A probe photo, its enrolled gallery and its clean similarities (shared by all runs)."""

    photo: LabelledPhoto
    enrolled: dict[str, np.ndarray]
    clean: dict[str, float]
    clean_conditions: dict[str, Similarity]


def _attack_sets(cfg: BenchConfig, runtime: Runtime) -> list[list[str]]:
    """Leave-one-out over the attackable models (evaluation-only ones judge every run)."""
    models = [m for m in cfg.models if not runtime.is_evaluation_only(m)]
    if cfg.leave_one_out and len(models) > 1:
        return [list(c) for c in combinations(models, len(models) - 1)]
    return [models]


def _best_match(
    runtime: Runtime,
    rgb: np.ndarray,
    ref: LabelledPhoto,
    enrolled: dict[str, np.ndarray],
    scale: float,
) -> Similarity:
    """Best similarity to an enrolled photo of the probe's face in ``rgb``, per model."""
    assert ref.face is not None
    face = match_faces([scaled_face(ref.face, scale)], runtime.detect(rgb))[0]
    out: Similarity = {}
    for m, gallery in enrolled.items():
        sims = None if face is None else embed(runtime, rgb, [face], m)[0] @ gallery.T
        out[m] = None if sims is None else float(sims.max())
    return out


def _under_conditions(
    runtime: Runtime,
    rgb: np.ndarray,
    probe: LabelledPhoto,
    enrolled: dict[str, np.ndarray],
    names: tuple[str, ...],
) -> dict[str, Similarity]:
    """Best enrolled similarity of the probe face in ``rgb`` under each condition."""
    out = {}
    for c in names:
        changed = conditions.apply(runtime, rgb, c)
        out[c] = _best_match(runtime, changed, probe, enrolled, conditions.scale_of(c))
    return out


def _probes(cfg: BenchConfig, runtime: Runtime, photos: list[LabelledPhoto]) -> list[_Probe]:
    """The probes with their galleries and clean similarities (computed once)."""
    by_person: dict[str, list[LabelledPhoto]] = {}
    for p in photos:
        by_person.setdefault(p.person, []).append(p)
    chosen = [p for p in photos if len(by_person[p.person]) >= 2 and p.face is not None]
    chosen = chosen[: cfg.limit] if cfg.limit else chosen
    emb = {
        m: {str(p.path): embed(runtime, p.rgb, [p.face], m)[0] for p in photos if p.face}
        for m in cfg.models
    }
    out = []
    for p in chosen:
        others = [
            e for e in by_person[p.person] if e is not p and str(e.path) in emb[cfg.models[0]]
        ]
        enrolled = {m: np.stack([emb[m][str(e.path)] for e in others]) for m in cfg.models}
        clean = {m: float((emb[m][str(p.path)] @ enrolled[m].T).max()) for m in cfg.models}
        cond = _under_conditions(runtime, p.rgb, p, enrolled, cfg.conditions)
        out.append(_Probe(p, enrolled, clean, cond))
    return out


def _warm_up(runtime: Runtime, models: list[str]) -> None:
    """Load every model the protect call uses, so timing excludes loading."""
    for m in models:
        if runtime.is_evaluation_only(m):
            runtime.dlib_recognizer(m)
        else:
            runtime.recognizer(m)
    runtime.landmarks106()
    runtime.detect(np.zeros((64, 64, 3), dtype=np.uint8))


def run_bench(
    cfg: BenchConfig, runtime: Runtime, attack_sets: list[list[str]] | None = None
) -> dict[str, Any]:
    """Run the benchmark and return the JSON-ready result."""
    photos = load_faceset(runtime, cfg.faces)
    _warm_up(runtime, cfg.models)
    probes = _probes(cfg, runtime, photos)
    thr = {m: runtime.threshold(m) for m in cfg.models}
    runs = [
        _run_attack(runtime, cfg, surrogates, probes, thr)
        for surrogates in attack_sets or _attack_sets(cfg, runtime)
    ]
    return {
        "faces_dir": str(cfg.faces),
        "probes": len(probes),
        "strength": cfg.strength,
        "eps": cfg.eps,
        "steps": cfg.steps,
        "thresholds": thr,
        "device": str(runtime.device),
        "threads": torch.get_num_threads(),
        "runs": runs,
        "summary": summary(runs),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _probe_visibility(report: ProtectReport, probe: LabelledPhoto) -> FaceVisibility | None:
    """The report's visibility of the probe's face (the verified face overlapping it most)."""
    faces = report.verification.faces if report.verification else []
    assert probe.face is not None
    box = tuple(probe.face.box)
    best = max(faces, key=lambda f: box_iou(box, tuple(f.box)), default=None)
    return best.visibility if best and box_iou(box, tuple(best.box)) >= 0.3 else None


def _visibility_row(vis: FaceVisibility | None, rgb: np.ndarray) -> dict[str, Any]:
    if vis is None:
        return {"visibility": None, "flip_jpeg": None}
    x0, y0, x1, y1 = vis.box
    levels = jpeg_flips(rgb[y0:y1, x0:x1], JPEG_LEVELS)
    return {
        "visibility": vis.model_dump(mode="json"),
        "flip_jpeg": {str(q): round(f, 5) for q, f in levels.items()},
    }


def _protect_probe(
    runtime: Runtime, cfg: BenchConfig, surrogates: list[str], probe: _Probe
) -> dict[str, Any]:
    """Protect one probe with the whole job, time it, and match the saved photo."""
    p = probe.photo
    opts = ProtectOptions.model_validate(
        {"strength": cfg.strength, "seed": cfg.seed, "eps": cfg.eps, "steps": cfg.steps,
         "surrogates": surrogates}
    )  # fmt: skip
    data = p.path.read_bytes()
    t0 = time.perf_counter()
    outcome = protect_photo(data, p.path.name, opts, runtime)
    seconds = time.perf_counter() - t0
    report = ProtectReport.model_validate(outcome.report)
    saved = None if outcome.output is None else decode_image(outcome.output, runtime.max_pixels).rgb
    if saved is None:  # refused: the owner keeps the unprotected photo
        after = probe.clean_conditions
    else:
        after = _under_conditions(runtime, saved, p, probe.enrolled, cfg.conditions)
    n_faces = len(report.faces or [])
    return {
        "photo": p.path.name,
        "status": outcome.status,
        "faces": n_faces,
        "seconds": round(seconds, 2),
        "seconds_per_face": round(seconds / n_faces, 2) if n_faces else None,
        "attack_seconds": report.seconds.attack if report.seconds else None,
        "steps": [f.steps for f in report.faces or []],
        "psnr": None if saved is None else round(psnr(p.rgb, saved), 2),
        **_visibility_row(_probe_visibility(report, p), p.rgb),
        "clean": probe.clean,
        "clean_conditions": probe.clean_conditions,
        "after": after,
    }


def _run_attack(
    runtime: Runtime,
    cfg: BenchConfig,
    surrogates: list[str],
    probes: list[_Probe],
    thr: dict[str, float],
) -> dict[str, Any]:
    rows = []
    for n, probe in enumerate(probes):
        row = _protect_probe(runtime, cfg, surrogates, probe)
        print(
            f"[{'+'.join(surrogates)}] {n + 1}/{len(probes)} {row['photo']} {row['status']} "
            f"{row['seconds']:.1f}s steps {row['steps']}",
            file=sys.stderr,
            flush=True,
        )
        rows.append(row)
    return {
        "surrogates": surrogates,
        "probes": rows,
        "psr": _psr(rows, cfg, thr),
        "summary": run_summary(rows),
    }


def _psr(rows: list[dict[str, Any]], cfg: BenchConfig, thr: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in cfg.models:
        counted = [r for r in rows if r["clean"][m] >= thr[m]]
        out[m] = {
            "clean_match_rate": round(len(counted) / max(1, len(rows)), 3),
            "counted": len(counted),
        }
        for cond in cfg.conditions:
            ok = [
                r for r in counted if (r["after"][cond][m] is None or r["after"][cond][m] < thr[m])
            ]
            cm = [
                r
                for r in rows
                if r["clean_conditions"][cond][m] is not None
                and r["clean_conditions"][cond][m] >= thr[m]
            ]
            out[m][cond] = {
                "psr": round(len(ok) / len(counted), 3) if counted else None,
                "clean_match_rate": round(len(cm) / max(1, len(rows)), 3),
            }
    return out


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def run_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a run's probe faces: visibility, JPEG re-save levels, time per face."""
    vis = [r["visibility"] for r in rows if r["visibility"] is not None]
    levels = [r["flip_jpeg"] for r in rows if r["flip_jpeg"] is not None]
    return {
        "faces_measured": len(vis),
        "median_flip_face": _median([v["flip"] for v in vis]),
        "median_ssim_face": _median([v["ssim"] for v in vis]),
        "median_psnr_face": _median([v["psnr"] for v in vis]),
        "median_jpeg_equivalent": _median([v["jpeg_equivalent"] for v in vis]),
        "below_q50": sum(v["below_min"] for v in vis),
        "median_flip_jpeg": {str(q): _median([lv[str(q)] for lv in levels]) for q in JPEG_LEVELS},
        "median_seconds_per_face": _median([r["seconds_per_face"] for r in rows]),
        "refused": sum(r["status"] != "protected" for r in rows),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over every run, and the default pair's time per face."""
    rows = [r for run in runs for r in run["probes"]]
    default = next((run for run in runs if run["surrogates"] == ["w600k_mbf", "sface"]), runs[0])
    attack = sum(r["attack_seconds"] or 0.0 for r in rows)
    return {
        **run_summary(rows),
        "median_seconds_per_face_default": _median(
            [r["seconds_per_face"] for r in default["probes"]]
        ),
        "attack_share": attack / max(1e-9, sum(r["seconds"] for r in rows)),
        "median_psnr": _median([r["psnr"] for r in rows]),
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _num(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _psr_table(result: dict[str, Any]) -> list[str]:
    conds = [
        c for c in result["runs"][0]["psr"][next(iter(result["runs"][0]["psr"]))]
        if c not in ("clean_match_rate", "counted")
    ]  # fmt: skip
    lines = [
        "| attack surrogates | model | role | clean match | "
        + " | ".join(f"PSR {c}" for c in conds)
        + " |",
        "|---|---|---|---|" + "---|" * len(conds),
    ]
    for run in result["runs"]:
        for m, v in run["psr"].items():
            role = "white-box" if m in run["surrogates"] else "held-out"
            cells = [_pct(v[c]["psr"]) for c in conds]
            lines.append(
                f"| {' + '.join(run['surrogates'])} | {m} | {role} | "
                f"{_pct(v['clean_match_rate'])} ({v['counted']}) | " + " | ".join(cells) + " |"
            )
    return lines


def _visibility_table(result: dict[str, Any]) -> list[str]:
    jpeg = " | ".join(f"FLIP JPEG q{q}" for q in JPEG_LEVELS)
    lines = [
        f"| attack surrogates | faces | median face FLIP | {jpeg} | as visible as | "
        "SSIM face | PSNR face | s/face | refused |",
        "|---|---|---|" + "---|" * len(JPEG_LEVELS) + "---|---|---|---|---|",
    ]
    for run in result["runs"]:
        s = run["summary"]
        q = s["median_jpeg_equivalent"]
        levels = " | ".join(_num(s["median_flip_jpeg"][str(q)], ".4f") for q in JPEG_LEVELS)
        lines.append(
            f"| {' + '.join(run['surrogates'])} | {s['faces_measured']} | "
            f"{_num(s['median_flip_face'], '.4f')} | {levels} | "
            f"{'n/a' if q is None else f'JPEG q{q:.0f}'} ({s['below_q50']} below q50) | "
            f"{_num(s['median_ssim_face'], '.4f')} | {_num(s['median_psnr_face'], '.2f')} dB | "
            f"{_num(s['median_seconds_per_face'], '.2f')} | {s['refused']} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The benchmark as Markdown tables: PSR per condition, then visibility and time."""
    s = result["summary"]
    budget = "".join(f", {k} {result[k]}" for k in ("eps", "steps") if result.get(k) is not None)
    return "\n".join(
        [
            f"Probes: {result['probes']} from `{result['faces_dir']}`, strength "
            f"{result['strength']}{budget}, device {result['device']}, "
            f"{result['threads']} threads.",
            "",
            *_psr_table(result),
            "",
            *_visibility_table(result),
            "",
            "| median s/face (all runs) | median s/face (w600k_mbf+sface) | time in attack | "
            "median PSNR photo | peak RSS |",
            "|---|---|---|---|---|",
            f"| {_num(s['median_seconds_per_face'], '.2f')} | "
            f"{_num(s['median_seconds_per_face_default'], '.2f')} | "
            f"{100 * s['attack_share']:.0f}% | {_num(s['median_psnr'], '.2f')} dB | "
            f"{result['peak_rss_mb']:.0f} MB |",
        ]
    )
