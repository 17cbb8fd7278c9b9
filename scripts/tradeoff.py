"""Protection against visibility: held-out PSR over median face FLIP, per preset and eps.

    python scripts/tradeoff.py --faces ../shared/data/faces/test --out docs/tradeoff.png \\
        [--limit N] [--eps 4,8,12] [--steps N] [--presets low,medium] [--keep medium]

Attacks with the default surrogates (w600k_mbf + sface) and holds FaceNet out. One point
per preset (``facecloak.contract.options.PRESETS``) and per ``--eps`` value (default
preset's steps). Vertical lines: the median FLIP of real JPEG q90/q75/q50 re-saves of the
same faces, so a point left of "q75" is less visible than a q75 re-save. Writes the chart,
the JSON behind it (same name, ``.json``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from facecloak.contract.options import PRESETS, ProtectOptions
from facecloak.settings import Settings
from workers.jobs.bench import JPEG_LEVELS, BenchConfig, run_bench
from workers.jobs.runtime import Runtime

SURROGATES = ["w600k_mbf", "sface"]
HELD_OUT = "facenet"
DEFAULT_STRENGTH = ProtectOptions().strength


def _point(label: str, result: dict[str, Any], conditions: tuple[str, ...]) -> dict[str, Any]:
    """One chart point from a single-run benchmark result."""
    run = result["runs"][0]
    s = run["summary"]
    return {
        "label": label,
        "strength": result["strength"],
        "eps": result["eps"],
        "steps": result["steps"],
        "probes": result["probes"],
        "median_flip_face": s["median_flip_face"],
        "median_jpeg_equivalent": s["median_jpeg_equivalent"],
        "median_ssim_face": s["median_ssim_face"],
        "median_psnr_face": s["median_psnr_face"],
        "median_flip_jpeg": s["median_flip_jpeg"],
        "held_out_psr": {c: run["psr"][HELD_OUT][c]["psr"] for c in conditions},
        "white_box_psr": {c: [run["psr"][m][c]["psr"] for m in SURROGATES] for c in conditions},
        "seconds_per_face": s["median_seconds_per_face"],
        "refused": s["refused"],
    }


def measure(args: argparse.Namespace, runtime: Runtime) -> list[dict[str, Any]]:
    """Run the benchmark once per preset and per eps value."""
    conditions = tuple(args.conditions.split(","))
    presets = args.presets.split(",") if args.presets else list(PRESETS)
    configs = [(name, name, None) for name in presets]
    configs += [(f"eps {e:g}", DEFAULT_STRENGTH, e) for e in args.eps]
    points = []
    for label, strength, eps in configs:
        cfg = BenchConfig(
            faces=Path(args.faces),
            models=[*SURROGATES, HELD_OUT],
            strength=strength,
            leave_one_out=False,
            conditions=conditions,
            limit=args.limit,
            eps=eps,
            steps=args.steps,
        )
        points.append(_point(label, run_bench(cfg, runtime, [SURROGATES]), conditions))
    return points


def chart(points: list[dict[str, Any]], out: Path, title: str) -> None:
    """Held-out PSR (saved photo, and after each other condition) over median face FLIP."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    levels = points[0]["median_flip_jpeg"]
    for q in JPEG_LEVELS:
        if levels[str(q)] is not None:
            ax.axvline(levels[str(q)], color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"JPEG q{q}", (levels[str(q)], 2), rotation=90, fontsize=7, color="grey")
    for cond in points[0]["held_out_psr"]:
        pts = [p for p in points if p["median_flip_face"] is not None]
        ys = [100 * (p["held_out_psr"][cond] or 0.0) for p in pts]
        ax.scatter([p["median_flip_face"] for p in pts], ys, label=f"held-out {HELD_OUT}, {cond}")
        if cond == "saved":
            for p, y in zip(pts, ys, strict=True):
                ax.annotate(p["label"], (p["median_flip_face"], y), xytext=(4, 4),
                            textcoords="offset points", fontsize=8)  # fmt: skip
    ax.set_xlabel("median face FLIP (saved photo; lower is less visible)")
    ax.set_ylabel("held-out protection success rate (%)")
    ax.set_title(title)
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def table(points: list[dict[str, Any]]) -> str:
    """The points as a Markdown table."""
    conds = list(points[0]["held_out_psr"])
    lines = [
        "| point | median face FLIP | as visible as | SSIM face | PSNR face | "
        + " | ".join(f"held-out PSR {c}" for c in conds)
        + " | s/face | refused |",
        "|---|---|---|---|---|" + "---|" * len(conds) + "---|---|",
    ]
    for p in points:
        psr = " | ".join(
            "n/a" if p["held_out_psr"][c] is None else f"{100 * p['held_out_psr'][c]:.0f}%"
            for c in conds
        )
        q = p["median_jpeg_equivalent"]
        lines.append(
            f"| {p['label']} | {_fmt(p['median_flip_face'], '.4f')} | "
            f"{'n/a' if q is None else f'JPEG q{q:.0f}'} | {_fmt(p['median_ssim_face'], '.4f')} | "
            f"{_fmt(p['median_psnr_face'], '.2f')} | {psr} | "
            f"{_fmt(p['seconds_per_face'], '.2f')} | {p['refused']} |"
        )
    levels = points[0]["median_flip_jpeg"]
    refs = ", ".join(f"q{q} {_fmt(levels[str(q)], '.4f')}" for q in JPEG_LEVELS)
    return "\n".join([*lines, "", f"FLIP of real JPEG re-saves of the same faces: {refs}."])


def _kept_points(path: Path, labels: list[str]) -> list[dict[str, Any]]:
    """The points called ``labels`` from an earlier run's JSON (each must be there)."""
    if not labels:
        return []
    earlier = {p["label"]: p for p in json.loads(path.read_text())}
    missing = [k for k in labels if k not in earlier]
    if missing:
        raise SystemExit(f"--keep: no point {missing} in {path}")
    return [earlier[k] for k in labels]


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--faces", required=True)
    ap.add_argument("--out", default="docs/tradeoff.png")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--presets", default=None, help="comma-separated (default: every preset)")
    ap.add_argument("--eps", type=lambda s: [float(v) for v in s.split(",")], default=[],
                    help="extra points: comma-separated eps values in 1/255 units")  # fmt: skip
    ap.add_argument("--steps", type=int, default=None, help="cap every point's attack steps")
    ap.add_argument("--conditions", default="saved,jpeg75,median3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", default="",
                    help="labels (separated by ';', as labels may hold commas) whose points to "
                         "keep from the existing JSON (measured earlier on the same faces) "
                         "instead of re-running")  # fmt: skip
    args = ap.parse_args(argv)
    out = Path(args.out)
    kept = _kept_points(out.with_suffix(".json"), [k for k in args.keep.split(";") if k])
    runtime = Runtime(Settings())
    torch.set_num_threads(args.threads)
    points = measure(args, runtime) + kept
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(points, indent=2))
    chart(points, out, f"FaceCloak presets on {Path(args.faces).name}/")
    print(table(points))


if __name__ == "__main__":
    main()
