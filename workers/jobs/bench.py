"""The protection benchmark (``facecloak bench``): PSR per model, white-box and held out.

Protocol: every photo of a person with at least two photos is a probe once; that
person's other photos are enrolled. A probe counts when it was matched before
protection (best similarity to an enrolled photo reaches the model's threshold at
FAR 0.1%); it is protected when, after protection, saving in its own format,
re-reading, re-detecting and re-aligning (and after each real-world condition), no
enrolled photo matches it. Each attack configuration leaves one model out
(leave-one-out), so every model is measured both white-box and held-out.
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
from facecloak.images import decode_image, encode_image
from workers.jobs import conditions
from workers.jobs.analysis import embed, find_faces, match_faces
from workers.jobs.faceset import LabelledPhoto, load_faceset
from workers.jobs.protect.config import cloak_config
from workers.jobs.protect.job import build_cloaker, face_inputs
from workers.jobs.quality import psnr, ssim
from workers.jobs.runtime import Runtime
from workers.jobs.verify import face_region, scaled_face


@dataclass
class BenchConfig:
    """What to run."""

    faces: Path
    models: list[str] = field(default_factory=lambda: ["w600k_mbf", "sface", "facenet"])
    strength: str = "medium"
    leave_one_out: bool = True
    conditions: tuple[str, ...] = ("saved", "jpeg75", "jpeg50", "resize0.5", "makeup")
    limit: int | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    """CloakConfig or AttackSpec fields (tuning)."""


def _attack_sets(cfg: BenchConfig) -> list[list[str]]:
    if cfg.leave_one_out and len(cfg.models) > 1:
        return [list(c) for c in combinations(cfg.models, len(cfg.models) - 1)]
    return [list(cfg.models)]


def _best_match(
    runtime: Runtime,
    rgb: np.ndarray,
    ref: LabelledPhoto,
    enrolled: dict[str, np.ndarray],
    scale: float,
) -> dict[str, float | None]:
    """Best similarity to an enrolled photo of the probe's face in ``rgb``, per model."""
    assert ref.face is not None
    face = match_faces([scaled_face(ref.face, scale)], runtime.detect(rgb))[0]
    out: dict[str, float | None] = {}
    for m, gallery in enrolled.items():
        sims = None if face is None else embed(runtime, rgb, [face], m)[0] @ gallery.T
        out[m] = None if sims is None else float(sims.max())
    return out


def run_bench(
    cfg: BenchConfig, runtime: Runtime, attack_sets: list[list[str]] | None = None
) -> dict[str, Any]:
    """Run the benchmark and return the JSON-ready result."""
    photos = load_faceset(runtime, cfg.faces)
    by_person: dict[str, list[LabelledPhoto]] = {}
    for p in photos:
        by_person.setdefault(p.person, []).append(p)
    probes = [p for p in photos if len(by_person[p.person]) >= 2 and p.face is not None]
    probes = probes[: cfg.limit] if cfg.limit else probes
    emb = {
        m: {str(p.path): embed(runtime, p.rgb, [p.face], m)[0] for p in photos if p.face}
        for m in cfg.models
    }
    thr = {m: runtime.threshold(m) for m in cfg.models}
    runs = []
    for surrogates in attack_sets or _attack_sets(cfg):
        runs.append(_run_attack(runtime, cfg, surrogates, probes, by_person, emb, thr))
    return {
        "faces_dir": str(cfg.faces),
        "probes": len(probes),
        "strength": cfg.strength,
        "thresholds": thr,
        "device": str(runtime.device),
        "threads": torch.get_num_threads(),
        "runs": runs,
        "summary": _summary(cfg, runs),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _enrolled(
    cfg: BenchConfig,
    p: LabelledPhoto,
    by_person: dict[str, list[LabelledPhoto]],
    emb: dict[str, dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Per model, the embeddings of the probe person's other photos."""
    return {
        m: np.stack(
            [
                emb[m][str(e.path)]
                for e in by_person[p.person]
                if e is not p and str(e.path) in emb[m]
            ]
        )
        for m in cfg.models
    }


def _run_attack(
    runtime: Runtime,
    cfg: BenchConfig,
    surrogates: list[str],
    probes: list[LabelledPhoto],
    by_person: dict[str, list[LabelledPhoto]],
    emb: dict[str, dict[str, np.ndarray]],
    thr: dict[str, float],
) -> dict[str, Any]:
    opts = ProtectOptions(strength=cfg.strength, seed=cfg.seed, surrogates=surrogates)  # type: ignore[arg-type]
    config = cloak_config(opts).with_overrides(cfg.overrides)
    cloaker = build_cloaker(opts, runtime, config)
    rows = []
    for n, p in enumerate(probes):
        enrolled = _enrolled(cfg, p, by_person, emb)
        clean = {m: float((emb[m][str(p.path)] @ enrolled[m].T).max()) for m in cfg.models}
        found = find_faces(runtime, p.rgb, runtime.min_face_size)
        faces = found.faces or ([p.face] if p.face else [])
        inputs = face_inputs(runtime, p.rgb, faces, config.makeup)
        t0 = time.perf_counter()
        result = cloaker.protect(p.rgb, inputs, cfg.seed)
        seconds = time.perf_counter() - t0
        img = decode_image(p.path.read_bytes(), runtime.max_pixels)
        saved = decode_image(encode_image(result.rgb, img), runtime.max_pixels).rgb
        after: dict[str, dict[str, float | None]] = {}
        clean_cond: dict[str, dict[str, float | None]] = {}
        for cond in cfg.conditions:
            s = conditions.scale_of(cond)
            after[cond] = _best_match(
                runtime, conditions.apply(runtime, saved, cond), p, enrolled, s
            )
            clean_cond[cond] = _best_match(
                runtime, conditions.apply(runtime, p.rgb, cond), p, enrolled, s
            )
        assert p.face is not None
        print(f"[{'+'.join(surrogates)}] {n + 1}/{len(probes)} {p.path.name} "
              f"{seconds:.1f}s steps {result.steps}", file=sys.stderr, flush=True)  # fmt: skip
        ys, xs = face_region(p.face, p.rgb.shape)
        rows.append(
            {
                "photo": p.path.name,
                "faces": len(faces),
                "seconds": round(seconds, 2),
                "seconds_per_face": round(seconds / len(faces), 2),
                "model_seconds": round(result.model_seconds, 2),
                "steps": result.steps,
                "psnr": round(psnr(p.rgb, saved), 2),
                "psnr_face": round(psnr(p.rgb[ys, xs], saved[ys, xs]), 2),
                "ssim_face": round(ssim(p.rgb[ys, xs], saved[ys, xs]), 4),
                "clean": clean,
                "clean_conditions": clean_cond,
                "after": after,
            }
        )
    return {"surrogates": surrogates, "probes": rows, "psr": _psr(rows, cfg, thr)}


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


def _summary(cfg: BenchConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for run in runs for r in run["probes"]]
    default = next((run for run in runs if run["surrogates"] == ["w600k_mbf", "sface"]), runs[0])
    return {
        "median_seconds_per_face": statistics.median(r["seconds_per_face"] for r in rows),
        "median_seconds_per_face_default": statistics.median(
            r["seconds_per_face"] for r in default["probes"]
        ),
        "model_share": sum(r["model_seconds"] for r in rows) / sum(r["seconds"] for r in rows),
        "median_psnr": statistics.median(r["psnr"] for r in rows),
        "median_psnr_face": statistics.median(r["psnr_face"] for r in rows),
        "median_ssim_face": statistics.median(r["ssim_face"] for r in rows),
    }


def markdown(result: dict[str, Any]) -> str:
    """The benchmark as Markdown tables."""
    conds = list(next(iter(result["runs"][0]["psr"].values())).keys())
    conds = [c for c in conds if c not in ("clean_match_rate", "counted")]
    lines = [
        f"Probes: {result['probes']} from `{result['faces_dir']}`, strength {result['strength']}, "
        f"device {result['device']}, {result['threads']} threads.",
        "",
        "| attack surrogates | model | role | clean match | "
        + " | ".join(f"PSR {c}" for c in conds)
        + " |",
        "|---|---|---|---|" + "---|" * len(conds),
    ]
    for run in result["runs"]:
        for m, v in run["psr"].items():
            role = "white-box" if m in run["surrogates"] else "held-out"
            cells = ["n/a" if v[c]["psr"] is None else f"{100 * v[c]['psr']:.0f}%" for c in conds]
            lines.append(
                f"| {' + '.join(run['surrogates'])} | {m} | {role} | "
                f"{100 * v['clean_match_rate']:.0f}% ({v['counted']}) | " + " | ".join(cells) + " |"
            )
    s = result["summary"]
    lines += [
        "",
        "| median s/face (all runs) | median s/face (w600k_mbf+sface) | time in model fwd+bwd | "
        "median PSNR photo | median PSNR face | median SSIM face | peak RSS |",
        "|---|---|---|---|---|---|---|",
        f"| {s['median_seconds_per_face']:.2f} | {s['median_seconds_per_face_default']:.2f} | "
        f"{100 * s['model_share']:.0f}% | "
        f"{s['median_psnr']:.2f} dB | {s['median_psnr_face']:.2f} dB | "
        f"{s['median_ssim_face']:.4f} | "
        f"{result['peak_rss_mb']:.0f} MB |",
    ]
    return "\n".join(lines)
