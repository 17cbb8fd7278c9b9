"""``facecloak captcha generate | train | bench`` (job code imported lazily)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facecloak.contract.captcha import parse_ink
from facecloak.settings import Settings


def cmd_captcha_generate(args: argparse.Namespace, settings: Settings) -> int:
    """Write ``-n`` robust CAPTCHA PNGs and ``answers.json`` ({file: answer}) to ``-o``."""
    import torch
    from pydantic import ValidationError

    from facecloak.contract.captcha import CAPTCHA_ALPHABET, CaptchaConfig
    from workers.jobs.captcha.generator import CaptchaRenderer
    from workers.jobs.captcha.maker import CaptchaMaker

    try:
        config = CaptchaConfig(length=args.length, alphabet=args.alphabet or CAPTCHA_ALPHABET)
        ink = ink_option(args.ink, settings)
    except (ValidationError, ValueError) as exc:
        msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        print(f"facecloak captcha generate: {msg}", file=sys.stderr)
        return 2
    if args.n < 1:
        print("facecloak captcha generate: -n must be at least 1", file=sys.stderr)
        return 2
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    maker = CaptchaMaker(renderer=CaptchaRenderer(ink=ink), routed=args.routed)
    if args.steps is not None:
        maker.spec = maker.spec.with_(steps=args.steps, check_every=args.steps)
    answers: dict[str, str] = {}
    for start in range(0, args.n, args.batch):
        count = min(args.batch, args.n - start)
        seed = None if args.seed is None else args.seed + start
        for i, made in enumerate(maker.make(config, count, seed)):
            name = f"captcha_{start + i:05d}.png"
            (out / name).write_bytes(made.base_png if args.plain else made.png)
            answers[name] = made.answer
        print(f"{start + count}/{args.n} ({maker.last_seconds / count:.2f} s per CAPTCHA)")
    (out / "answers.json").write_text(json.dumps(answers, indent=1) + "\n")
    print(f"{args.n} CAPTCHAs and answers.json in {out}")
    return 0


def served_maker(settings: Settings) -> Callable[[], Any]:
    """What a pool filler builds its maker with: the shipped ensemble, the settings' ink."""

    def make() -> Any:
        from workers.jobs.captcha.generator import CaptchaRenderer
        from workers.jobs.captcha.maker import CaptchaMaker

        return CaptchaMaker(renderer=CaptchaRenderer(ink=settings.captcha_ink_range))

    return make


def ink_option(text: str | None, settings: Settings) -> tuple[int, int]:
    """``--ink LO,HI`` if given, else the served ink of ``settings``."""
    return settings.captcha_ink_range if text is None else parse_ink(text)


def cmd_captcha_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train one of the shipped OCR models (see ``docs/captcha.md``)."""
    from workers.jobs.captcha.train import run_training

    return run_training(args)


def cmd_captcha_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Solve rates of clean vs robust CAPTCHAs, legibility proxies and timings."""
    from workers.jobs.captcha.bench import run_bench

    try:
        args.ink = ink_option(args.ink, settings)
    except ValueError as exc:
        print(f"facecloak captcha bench: {exc}", file=sys.stderr)
        return 2
    return run_bench(args, serve_latency)


def serve_latency(pooled: list[Any], requests: int) -> dict[str, float]:
    """p50/p95 ms of ``POST /v1/captchas`` on an in-process gateway whose pool holds
    ``pooled`` (refilled as it drains, as the filler would)."""
    import tempfile
    import time

    import numpy as np
    from fastapi.testclient import TestClient

    from facecloak.contract.captcha import CaptchaConfig
    from facecloak.contract.captcha_pool import LocalCaptchaPool
    from service.app import create_app

    pool, key = LocalCaptchaPool(), CaptchaConfig().key
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        bench_settings = Settings(
            data_dir=Path(tmp), broker_url=None, storage_url=None, jobstore_url=None,
            api_keys="bench-key:bench", rate_limit_per_minute=0,
        )  # fmt: skip
        app = create_app(bench_settings, captcha_pool=pool, background=False)
        with TestClient(app) as client:
            for _ in range(requests):
                if pool.size(key) == 0:
                    pool.put_many(key, list(pooled))
                started = time.perf_counter()
                r = client.post("/v1/captchas", headers={"X-API-Key": "bench-key"})
                times.append((time.perf_counter() - started) * 1000.0)
                r.raise_for_status()
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "requests": float(requests),
    }


def embedded_captcha_pool(settings: Settings) -> Any:
    """Embedded mode: an in-process pool with its filler thread started (None when off);
    it fills a configuration from its first request on."""
    if not settings.captcha_pool:
        return None
    from facecloak.contract.captcha_pool import LocalCaptchaPool
    from workers.jobs.captcha.pool import PoolFiller

    pool = LocalCaptchaPool()
    PoolFiller(
        pool,
        target=settings.captcha_pool_target,
        make_maker=served_maker(settings),
        prefill_default=False,
    ).start()
    return pool


def cmd_captcha_fill(args: argparse.Namespace, settings: Settings) -> int:
    """Distributed mode: keep the Redis pools filled (run beside the workers)."""
    import torch

    from facecloak.contract.captcha_pool import RedisCaptchaPool
    from workers.jobs.captcha.pool import PoolFiller

    url = settings.jobstore_url or settings.broker_url
    if not url or not url.startswith(("redis://", "rediss://")):
        print("facecloak captcha fill: set FACECLOAK_BROKER_URL=redis://...", file=sys.stderr)
        return 2
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    filler = PoolFiller(
        RedisCaptchaPool.from_url(url),
        target=settings.captcha_pool_target,
        make_maker=served_maker(settings),
    )
    print(f"filling CAPTCHA pools to {filler.target} each (Ctrl-C stops)")
    try:
        filler.run()
    except KeyboardInterrupt:
        filler.stop()
    return 0


INK_HELP = "text colour channel range LO,HI (default: FACECLOAK_CAPTCHA_INK, 110,190)"
ROUTED_HELP = "one model per EOT copy: 3x cheaper attack, weaker transfer (docs/captcha.md)"


def add_captcha_commands(sub: Any) -> None:
    """The ``captcha`` command and its subcommands."""
    cap = sub.add_parser("captcha", help="robust text CAPTCHAs")
    csub = cap.add_subparsers(dest="captcha_command", required=True)

    ge = csub.add_parser("generate", help="write N robust CAPTCHAs and answers.json")
    ge.add_argument("-n", type=int, required=True, help="how many")
    ge.add_argument("-o", "--output", required=True, help="output folder")
    ge.add_argument("--length", type=int, default=4)
    ge.add_argument("--alphabet", default=None, help="a subset of the default alphabet")
    ge.add_argument("--seed", type=int, default=None, help="reproducible (never for serving)")
    ge.add_argument("--plain", action="store_true", help="the base images, no perturbation")
    ge.add_argument("--batch", type=int, default=16)
    ge.add_argument("--steps", type=int, default=None, help="attack steps (default 30)")
    ge.add_argument("--threads", type=int, default=2)
    ge.add_argument("--ink", default=None, help=INK_HELP)
    ge.add_argument("--routed", action="store_true", help=ROUTED_HELP)
    ge.set_defaults(func=cmd_captcha_generate)

    fi = csub.add_parser("fill", help="keep the Redis CAPTCHA pools filled (distributed)")
    fi.add_argument("--threads", type=int, default=2)
    fi.set_defaults(func=cmd_captcha_fill)

    tr = csub.add_parser("train", help="train a shipped OCR model")
    tr.add_argument("name", help="weights name, e.g. crnn or crnn_adv")
    tr.add_argument("--arch", choices=["cnn", "crnn", "lstm"], required=True)
    tr.add_argument("--steps", type=int, default=2000)
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--train-size", type=int, default=16000)
    tr.add_argument("--val-size", type=int, default=1000)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--adversarial-eps", type=float, default=0.0, help="PGD eps, 1/255 units")
    tr.add_argument("--adversarial-steps", type=int, default=3)
    tr.add_argument("--init", default=None, help="start from these shipped weights")
    tr.add_argument("--cache", default=None, help="rendered sets (~/.cache/facecloak/captcha)")
    tr.add_argument("--out", default=None, help="weights folder (models/ocr/weights)")
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--log-every", type=int, default=250)
    tr.set_defaults(func=cmd_captcha_train)

    be = csub.add_parser("bench", help="solve rates, legibility and timings")
    add_bench_arguments(be)
    be.set_defaults(func=cmd_captcha_bench)


def add_bench_arguments(be: argparse.ArgumentParser) -> None:
    """The benchmark's arguments."""
    be.add_argument("-n", type=int, default=200, help="CAPTCHAs in the test set")
    be.add_argument("--length", type=int, default=4)
    be.add_argument("--seed", type=int, default=7)
    be.add_argument("--threads", type=int, default=2)
    be.add_argument("--adaptive", default="", help="training-set sizes of the adaptive attacker")
    be.add_argument("--adaptive-steps", type=int, default=1500)
    be.add_argument("--pool-requests", type=int, default=200)
    be.add_argument("--json", default=None, help="also write the figures here")
    be.add_argument("--grid", default=None, help="write a clean-vs-robust PNG grid here")
    be.add_argument("--ink", default=None, help=INK_HELP)
    be.add_argument("--routed", action="store_true", help=ROUTED_HELP)
