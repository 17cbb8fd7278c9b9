"""``facecloak augment`` and ``facecloak augment-bench`` (job code imported lazily)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from facecloak.settings import Settings


def cmd_augment(args: argparse.Namespace, settings: Settings) -> int:
    """Augment a data set (or amend the model); write the result files under ``DIR``."""
    import torch
    from pydantic import ValidationError

    from facecloak.contract.augment import AugmentOptions
    from models.errors import ModelError
    from workers.jobs.augment.data import AugmentInputError
    from workers.jobs.augment.job import augment

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    fields: dict[str, Any] = {
        "mode": args.mode, "eps": args.eps, "steps": args.steps, "share": args.share,
        "epochs": args.epochs, "seed": args.seed, "adversarial_label": args.label,
        "refresh": args.refresh, "rebalance_from": args.rebalance_from,
        "targets": [int(t) for t in args.targets.split(",")] if args.targets else None,
        "phi": [float(p) for p in args.phi.split(",")],
    }  # fmt: skip
    try:
        options = AugmentOptions(**fields)
    except ValidationError as exc:
        print(f"invalid options: {exc}", file=sys.stderr)
        return 2
    data = Path(args.data)
    if data.suffix.lower() not in (".zip", ".npz"):
        print(f"{data}: give a .zip of class folders or an .npz", file=sys.stderr)
        return 2
    try:
        result = augment(
            Path(args.model).read_bytes(), data.name.lower(), data.read_bytes(), options,
            lambda done, total: None,
        )  # fmt: skip
    except (AugmentInputError, ModelError) as exc:
        print(f"{getattr(exc, 'code', 'invalid_input')}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    for name, blob in result.files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    report = result.report
    line = f"{report.mode}: {report.generated} images generated from {report.images}"
    if report.before is not None and report.after is not None:
        line += (
            f"; held-out clean {report.before.clean:.3f} -> {report.after.clean:.3f}, "
            f"adversarial {report.before.adversarial:.3f} -> {report.after.adversarial:.3f}"
        )
    print(f"{line}; {out / 'report.json'}")
    return 0


def cmd_augment_bench(args: argparse.Namespace, settings: Settings) -> int:
    """The augmentation benchmark (rebalance, amend, relabelled adversarial training)."""
    from workers.jobs.augment.bench import main as bench_main

    return bench_main(args)


def add_augment_commands(sub: Any) -> None:
    """The ``augment`` and ``augment-bench`` subcommands."""
    au = sub.add_parser("augment", help="adversarial data augmentation of a labelled image set")
    au.add_argument("data", help="a zip of one folder per class, or an npz (x, y)")
    au.add_argument("model", help="the classifier (ONNX)")
    au.add_argument("--mode", choices=["adversarial", "rebalance", "amend"], required=True)
    au.add_argument("-o", "--output", required=True, help="output folder")
    au.add_argument("--eps", type=float, default=0.1)
    au.add_argument("--steps", type=int, default=10)
    au.add_argument("--targets", default=None, help="adversarial/rebalance: class indices, a,b")
    au.add_argument("--label", choices=["source", "target"], default="source")
    au.add_argument("--phi", default="0.5", help="mediate sample factors, e.g. 0.3,0.6")
    au.add_argument("--share", type=float, default=1.0, help="rebalance: share of the largest")
    au.add_argument(
        "--rebalance-from", choices=["own", "others"], default="own",
        help="rebalance: examples from the short class's own images, or from the other classes",
    )  # fmt: skip
    au.add_argument("--epochs", type=int, default=6, help="amend: fine-tuning epochs")
    au.add_argument("--refresh", action="store_true", help="amend: re-attack the model every epoch")
    au.add_argument("--seed", type=int, default=0)
    au.add_argument("--threads", type=int, default=2)
    au.set_defaults(func=cmd_augment)

    be = sub.add_parser(
        "augment-bench", help="adversarial augmentation benchmark (digits, letters)"
    )
    be.add_argument("--seeds", type=int, default=3)
    be.add_argument("--seed-base", type=int, default=0, help="first seed (tune on 100 and up)")
    be.add_argument("--sets", default="digits,letters")
    be.add_argument("--parts", default="rebalance,amend,relabel,speed")
    be.add_argument("--threads", type=int, default=2)
    be.add_argument("--json", default=None, help="also write the rows here")
    be.set_defaults(func=cmd_augment_bench)
