"""The ``facecloak`` command line: protect, verify, bench, calibrate, models, serve, worker."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facecloak.cli_service import add_service_commands
from facecloak.cli_tools import DEFAULT_STRENGTH, STRENGTHS, add_tool_commands, model_store
from facecloak.contract.options import PhotoOutcome, ProtectOptions

if TYPE_CHECKING:
    from facecloak.settings import Settings


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
    from workers.jobs.protect.pool import available_cpus, pool_shape

    options = _protect_options(args)
    photos = _protect_inputs(args, settings) if options is not None else None
    if options is None or photos is None:
        return 2
    readable = _read_photos(photos)
    failures = len(photos) - len(readable)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    shape = pool_shape(args.workers, len(readable), settings, available_cpus())
    bars = _progress_printer(not args.quiet, len(readable))
    results: Iterator[tuple[int, PhotoOutcome | Exception]]
    if shape.workers == 1:
        results = _protect_here(readable, options, settings, bars)
    else:
        from workers.jobs.protect.pool import protect_in_pool

        results = protect_in_pool(readable, options, settings, shape)
    for index, outcome in results:
        bars.finish_photo()
        name, data = readable[index]
        if isinstance(outcome, Exception):
            print(f"{name}: failed (worker_died): {outcome}", file=sys.stderr)
            failures += 1
            continue
        failures += not _write_outcome(out, name, data, outcome, args.preview, settings)
    bars.close()
    return 1 if failures else 0


def _read_photos(photos: list[Path]) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each readable photo; an unreadable one is reported and skipped."""
    readable = []
    for path in photos:
        try:
            readable.append((path.name, path.read_bytes()))
        except OSError as exc:
            print(f"{path.name}: failed (unreadable): {exc}", file=sys.stderr)
    return readable


def _protect_here(
    photos: list[tuple[str, bytes]],
    options: ProtectOptions,
    settings: Settings,
    bars: _ProtectProgress,
) -> Iterator[tuple[int, PhotoOutcome]]:
    """Protect the photos one after another in this process (with per-photo progress)."""
    from workers.jobs.protect import protect_photo
    from workers.jobs.runtime import Runtime

    runtime = Runtime(settings)
    for index, (name, data) in enumerate(photos):
        yield index, protect_photo(data, name, options, runtime, bars.photo(name))


def _write_outcome(
    out: Path, name: str, data: bytes, outcome: PhotoOutcome, preview: bool, settings: Settings
) -> bool:
    """Write a photo's report (and the protected photo, and its preview); False: not protected."""
    from workers.jobs.preview import report_boxes, write_preview

    (out / f"{name}.json").write_text(json.dumps(outcome.report, indent=2))
    if outcome.status == "protected" and outcome.output is not None:
        (out / name).write_bytes(outcome.output)
        if preview:
            boxes = report_boxes(outcome.report)
            write_preview(
                data, outcome.output, out / f"{name}.preview.png", settings.max_pixels, boxes
            )
        print(f"{name}: protected ({outcome.faces} face(s))")
        return True
    err = outcome.error
    reason = f"{err.code}: {err.message}" if err else outcome.status
    print(f"{name}: {outcome.status} ({reason})", file=sys.stderr)
    return False


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


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


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
    pr.add_argument(
        "--workers",
        type=_non_negative,
        default=0,
        help="photos protected at once, each in its own process with a share of the CPU "
        "threads (default 0: automatic, one per CPU up to 4; 1 on a GPU)",
    )
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

    add_tool_commands(sub)
    add_service_commands(sub)
    from facecloak.commands_backdoor import add_backdoor_commands

    add_backdoor_commands(sub)
    from facecloak.commands_augment import add_augment_commands

    add_augment_commands(sub)
    from facecloak.commands_captcha import add_captcha_commands

    add_captcha_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the settings once and run the command with them."""
    from facecloak.settings import Settings

    args = build_parser().parse_args(argv)
    return int(args.func(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
