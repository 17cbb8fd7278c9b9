"""Preset trade-off: run the benchmark at each strength and plot PSR against PSNR.

    python scripts/tradeoff.py --faces ../shared/data/faces/test --out docs/tradeoff.png

Attacks with the default surrogates (w600k_mbf + sface); FaceNet is held out.
Writes the chart, a JSON of the points, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from facecloak.settings import Settings
from workers.jobs.bench import BenchConfig, run_bench
from workers.jobs.runtime import Runtime

SURROGATES = ["w600k_mbf", "sface"]
HELD_OUT = "facenet"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--faces", required=True)
    ap.add_argument("--out", default="docs/tradeoff.png")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    runtime = Runtime(Settings())
    torch.set_num_threads(args.threads)
    points = []
    for strength in ("low", "medium", "high"):
        cfg = BenchConfig(
            faces=Path(args.faces),
            models=[*SURROGATES, HELD_OUT],
            strength=strength,
            leave_one_out=False,
            conditions=("saved", "jpeg75"),
            limit=args.limit,
        )
        cfg_sets = [SURROGATES]
        result = run_bench(cfg, runtime, attack_sets=cfg_sets)
        run = result["runs"][0]
        probes = run["probes"]
        points.append(
            {
                "strength": strength,
                "psnr_photo": statistics.median(p["psnr"] for p in probes),
                "psnr_face": statistics.median(p["psnr_face"] for p in probes),
                "white_box_psr": statistics.mean(run["psr"][m]["saved"]["psr"] for m in SURROGATES),
                "held_out_psr": run["psr"][HELD_OUT]["saved"]["psr"],
                "held_out_psr_jpeg75": run["psr"][HELD_OUT]["jpeg75"]["psr"],
                "seconds_per_face": statistics.median(p["seconds_per_face"] for p in probes),
            }
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(points, indent=2))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    xs = [p["psnr_photo"] for p in points]
    for key, label in (
        ("white_box_psr", "white-box (w600k_mbf, sface)"),
        ("held_out_psr", "held-out FaceNet"),
        ("held_out_psr_jpeg75", "held-out FaceNet after JPEG 75"),
    ):
        ys = [100 * p[key] for p in points]
        ax.plot(xs, ys, marker="o", label=label)
        for x, y, p in zip(xs, ys, points, strict=True):
            ax.annotate(
                p["strength"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    ax.set_xlabel("median PSNR of the whole photo (dB)")
    ax.set_ylabel("protection success rate (%)")
    ax.set_title(f"FaceCloak presets on {Path(args.faces).name}/")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(
        "| preset | PSNR photo | PSNR face | white-box PSR | held-out FaceNet PSR | "
        "held-out after JPEG 75 | s/face |"
    )
    print("|---|---|---|---|---|---|---|")
    for p in points:
        print(
            f"| {p['strength']} | {p['psnr_photo']:.2f} dB | {p['psnr_face']:.2f} dB | "
            f"{100 * p['white_box_psr']:.0f}% | {100 * p['held_out_psr']:.0f}% | "
            f"{100 * p['held_out_psr_jpeg75']:.0f}% | {p['seconds_per_face']:.2f} |"
        )


if __name__ == "__main__":
    main()
