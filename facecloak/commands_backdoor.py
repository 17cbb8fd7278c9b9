"""``facecloak backdoor-scan`` and ``facecloak backdoor-bench`` (job code imported lazily)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from facecloak.settings import Settings


def cmd_backdoor_scan(args: argparse.Namespace, settings: Settings) -> int:
    """Scan one ONNX classifier; write ``DIR/report.json`` and the figures."""
    import torch

    from facecloak.contract.backdoor import BackdoorScanOptions, make_bundle
    from workers.jobs.backdoor.job import scan_bundle

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    options = BackdoorScanOptions(
        eps=args.eps, iterations=args.iterations, threshold=args.threshold,
        cleanse=not args.no_cleanse, seed=args.seed,
    )  # fmt: skip
    reference = Path(args.reference).read_bytes() if args.reference else None
    samples = (args.samples, Path(args.samples).read_bytes()) if args.samples else None
    bundle = make_bundle(Path(args.model).read_bytes(), reference, samples)
    outcome = scan_bundle(bundle, Path(args.model).name, options, lambda done, total: None)
    if outcome.error is not None:
        print(f"{args.model}: {outcome.error.code}: {outcome.error.message}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    import io
    import zipfile

    assert outcome.output is not None
    with zipfile.ZipFile(io.BytesIO(outcome.output)) as archive:
        archive.extractall(out)
    report: dict[str, Any] = outcome.report
    verdict = "SUSPICIOUS" if report["suspicious"] else "clean"
    print(
        f"{verdict}: target {report['target_class']}, source {report['source_class']}, "
        f"max score {max(report['scores']):.2f} (threshold {report['threshold']}); "
        f"{out / 'report.json'}"
    )
    return 1 if report["suspicious"] and args.fail_on_suspicious else 0


def cmd_backdoor_bench(args: argparse.Namespace, settings: Settings) -> int:
    """The detection benchmark over the digit model zoo."""
    from workers.jobs.backdoor.bench import main as bench_main

    return bench_main(args)


def add_backdoor_commands(sub: Any) -> None:
    """The ``backdoor-scan`` and ``backdoor-bench`` subcommands."""
    sc = sub.add_parser("backdoor-scan", help="scan an ONNX image classifier for backdoors")
    sc.add_argument("model", help="the classifier (ONNX)")
    sc.add_argument("--reference", default=None, help="a clean ONNX model of the same task")
    sc.add_argument("--samples", default=None, help="unlabelled images: .npz or .zip")
    sc.add_argument("-o", "--output", required=True, help="output folder")
    sc.add_argument("--eps", type=float, default=0.3)
    sc.add_argument("--iterations", type=int, default=20)
    sc.add_argument("--threshold", type=float, default=3.5)
    sc.add_argument("--no-cleanse", action="store_true", help="bias maps only")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--threads", type=int, default=2)
    sc.add_argument("--fail-on-suspicious", action="store_true", help="exit 1 when flagged")
    sc.set_defaults(func=cmd_backdoor_scan)

    be = sub.add_parser("backdoor-bench", help="backdoor detection benchmark (digit models)")
    be.add_argument("--split", choices=["tune", "report", "check"], default="report")
    be.add_argument("--cache", default=str(Path.home() / ".cache/facecloak/backdoor-zoo"))
    be.add_argument("--size", type=int, default=28)
    be.add_argument("--limit", type=int, default=None, help="at most this many models per group")
    be.add_argument("--threads", type=int, default=2)
    be.add_argument("--json", default=None, help="also write the rows here")
    be.set_defaults(func=cmd_backdoor_bench)
