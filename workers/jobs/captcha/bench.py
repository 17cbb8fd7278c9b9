"""``facecloak captcha bench``: what the robust CAPTCHAs cost OCR, people and the CPU.

Prints markdown tables: solve rates of every shipped OCR model (ensemble members and the
held-out one) and of ddddocr on base vs robust CAPTCHAs after each attacker clean-up;
legibility proxies (L-inf, SSIM, FLIP vs the base image); seconds per CAPTCHA; pool
latency; and the adaptive attacker (an architecture not in the ensemble trained on our
robust CAPTCHAs with their answers) by training-set size.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from facecloak.contract.captcha import SERVED_INK, CaptchaConfig, PooledCaptcha
from models.ocr.store import available, load_ocr
from workers.jobs.captcha.attack import ENSEMBLE, describe
from workers.jobs.captcha.data import to_tensor
from workers.jobs.captcha.generator import CaptchaRenderer
from workers.jobs.captcha.maker import CaptchaMaker, MadeCaptcha
from workers.jobs.captcha.solvers import (
    PREPROCESSING,
    Solver,
    ddddocr_solver,
    model_solver,
    solve_rate,
)
from workers.jobs.captcha.train import TrainConfig, accuracy, train
from workers.jobs.visibility import flip, luma_ssim

ADAPTIVE_ARCH = "lstm"


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> ``[H, W, 3]`` uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def make_set(
    maker: CaptchaMaker, config: CaptchaConfig, count: int, seed: int, batch: int = 16
) -> tuple[list[MadeCaptcha], float, float]:
    """``count`` seeded CAPTCHAs and the wall and CPU seconds each took (batches of
    ``batch``; on a shared machine the CPU time is the steadier figure)."""
    made: list[MadeCaptcha] = []
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, count, batch):
        made.extend(maker.make(config, min(batch, count - start), seed * 100_003 + start))
        each = maker.last_seconds / min(batch, count - start)
        print(f"{len(made)}/{count} CAPTCHAs, {each:.2f} s each", flush=True)
    per = max(count, 1)
    return made, (time.perf_counter() - started) / per, (time.process_time() - cpu) / per


def solvers() -> dict[str, Solver]:
    """Our shipped models (held-out ones marked) and ddddocr when installed."""
    out: dict[str, Solver] = {}
    for name in available():
        label = name if name in ENSEMBLE else f"{name} (held out)"
        out[label] = model_solver(load_ocr(name))
    dddd = ddddocr_solver()
    if dddd is not None:
        out["ddddocr (off the shelf)"] = dddd
    return out


def solve_table(base: np.ndarray, robust: np.ndarray, answers: list[str]) -> list[dict[str, Any]]:
    """One row per (solver, clean-up): solve rates on base and robust CAPTCHAs."""
    rows = []
    for name, solver in solvers().items():
        for prep, fn in PREPROCESSING.items():
            rows.append({
                "solver": name, "preprocessing": prep,
                "base": solve_rate(solver, fn(base), answers),
                "robust": solve_rate(solver, fn(robust), answers),
            })  # fmt: skip
    return rows


def legibility(base: np.ndarray, robust: np.ndarray) -> dict[str, float]:
    """L-inf (1/255), SSIM and FLIP of the robust images vs their base images."""
    diff = np.abs(base.astype(np.int16) - robust.astype(np.int16))
    ssims = [luma_ssim(a, b) for a, b in zip(base, robust, strict=True)]
    flips = [flip(a, b) for a, b in zip(base, robust, strict=True)]
    return {
        "linf_max_255": float(diff.max()),
        "ssim_mean": float(np.mean(ssims)),
        "ssim_min": float(np.min(ssims)),
        "flip_mean": float(np.mean(flips)),
    }


def adaptive_attacker(
    robust: np.ndarray, answers: list[str], sizes: list[int], steps: int, seed: int
) -> list[dict[str, Any]]:
    """A bot operator's OCR: the held-out architecture, already trained on clean CAPTCHAs of
    our style (the shipped ``lstm``), fine-tuned on the first ``size`` robust CAPTCHAs with
    their answers, then reading the robust CAPTCHAs after ``max(sizes)`` (unseen)."""
    held = max(sizes)
    if held >= len(answers):
        raise ValueError(f"adaptive sizes must stay below -n ({len(answers)})")
    images, test = to_tensor(robust[:held]), to_tensor(robust[held:])
    rows = []
    for size in sizes:
        model = train(
            TrainConfig(ADAPTIVE_ARCH, steps=steps, batch=min(32, size), lr=1e-3, seed=seed),
            images[:size], answers[:size], model=load_ocr(ADAPTIVE_ARCH),
        )  # fmt: skip
        rate = accuracy(model, test, answers[held:])
        rows.append({"train_size": size, "steps": steps, "test_size": len(answers) - held,
                     "robust_solve_rate": rate})  # fmt: skip
        print(f"adaptive {ADAPTIVE_ARCH} fine-tuned on {size} robust CAPTCHAs: {rate:.1%}")
    return rows


def grid_png(base: np.ndarray, robust: np.ndarray, rows: int = 6) -> bytes:
    """A PNG of ``rows`` base (left) / robust (right) pairs, 2x enlarged."""
    pairs = [np.concatenate([b, np.full((b.shape[0], 8, 3), 255, np.uint8), r], axis=1)
             for b, r in zip(base[:rows], robust[:rows], strict=True)]  # fmt: skip
    gap = np.full((8, pairs[0].shape[1], 3), 255, np.uint8)
    sheet = np.concatenate([x for p in pairs for x in (p, gap)][:-1], axis=0)
    image = Image.fromarray(sheet).resize(
        (sheet.shape[1] * 2, sheet.shape[0] * 2), Image.Resampling.NEAREST
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def print_tables(report: dict[str, Any]) -> None:
    """The report as markdown tables."""
    print("\n| solver | preprocessing | base solve rate | robust solve rate |")
    print("|---|---|---:|---:|")
    for row in report["solve"]:
        rates = f"{row['base']:.1%} | {row['robust']:.1%}"
        print(f"| {row['solver']} | {row['preprocessing']} | {rates} |")
    leg = report["legibility"]
    print(f"\nL-inf {leg['linf_max_255']:.0f}/255, SSIM mean {leg['ssim_mean']:.3f} "
          f"(min {leg['ssim_min']:.3f}), FLIP mean {leg['flip_mean']:.4f}; "
          f"{report['seconds_per_captcha']:.2f} s per CAPTCHA on CPU "
          f"({report['cpu_seconds_per_captcha']:.2f} s of CPU time, {report['threads']} "
          f"threads); attack: {report['attack']}")  # fmt: skip
    if "pool" in report:
        pool = report["pool"]
        print(f"POST /v1/captchas from a filled pool: p50 {pool['p50_ms']:.1f} ms, "
              f"p95 {pool['p95_ms']:.1f} ms ({pool['requests']} requests)")  # fmt: skip


ServeLatency = Callable[[list[PooledCaptcha], int], dict[str, float]]
"""``(pooled CAPTCHAs, requests) -> {"p50_ms", "p95_ms", ...}``: served over HTTP (injected
by the CLI: the jobs do not import the gateway)."""


def run_bench(args: argparse.Namespace, serve_latency: ServeLatency | None = None) -> int:
    """The whole benchmark; figures printed and optionally written as JSON."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    config = CaptchaConfig(length=args.length)
    ink: tuple[int, int] = tuple(args.ink) if getattr(args, "ink", None) else SERVED_INK
    maker = CaptchaMaker(
        renderer=CaptchaRenderer(ink=ink), routed=bool(getattr(args, "routed", False))
    )
    made, seconds, cpu_seconds = make_set(maker, config, args.n, args.seed)
    base = np.stack([decode_png(m.base_png) for m in made])
    robust = np.stack([decode_png(m.png) for m in made])
    answers = [m.answer for m in made]
    report: dict[str, Any] = {
        "n": args.n, "length": args.length, "seed": args.seed, "threads": args.threads,
        "ink": list(ink),
        "attack": describe(maker.spec, maker.routed),
        "seconds_per_captcha": seconds,
        "cpu_seconds_per_captcha": cpu_seconds,
        "solve": solve_table(base, robust, answers),
        "legibility": legibility(base, robust),
    }  # fmt: skip
    if args.pool_requests and serve_latency is not None:
        report["pool"] = serve_latency([m.pooled() for m in made], args.pool_requests)
    if args.grid:
        with open(args.grid, "wb") as fh:
            fh.write(grid_png(base, robust))
    print_tables(report)
    _write(report, args.json)
    sizes = [int(s) for s in args.adaptive.split(",") if s]
    if sizes:
        report["adaptive"] = adaptive_attacker(
            robust, answers, sizes, args.adaptive_steps, args.seed
        )
        _write(report, args.json)
    return 0


def _write(report: dict[str, Any], path: str | None) -> None:
    if path:
        with open(path, "w") as fh:
            json.dump(report, fh, indent=1)
