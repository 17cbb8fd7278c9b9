"""The protect job: decode a photo, cloak every face, save it in its own format, verify, report."""

from __future__ import annotations

import time

import numpy as np

from facecloak.contract.options import JobError, PhotoOutcome, ProtectOptions
from facecloak.contract.reports import (
    FaceAttack,
    ModelUse,
    ProtectReport,
    ReportError,
    Seconds,
)
from facecloak.images import DecodedImage, ImageError, decode_image, encode_image
from models.detection import Face
from models.errors import ModelError
from models.landmarks106 import GROUPS
from workers.jobs import visibility
from workers.jobs.analysis import FoundFaces, find_faces
from workers.jobs.decoys import DecoyPicker
from workers.jobs.protect.cloak import Cloaker, CloakResult
from workers.jobs.protect.config import CloakConfig, cloak_config
from workers.jobs.protect.geometry import FaceInput
from workers.jobs.protect.makeup import MakeupFilter
from workers.jobs.protect.search import Progress
from workers.jobs.protect.summary import attack_summary
from workers.jobs.runtime import Runtime
from workers.jobs.verify import verify_arrays

__all__ = ["Progress", "build_cloaker", "check_models", "face_inputs", "protect_photo"]


def check_models(options: ProtectOptions, runtime: Runtime) -> None:
    """Raise ModelError for an unknown model or one that is not a recognizer."""
    for name in [*options.surrogates, *options.eval_models]:
        spec = runtime.store.spec(name)
        if spec.role != "recognizer":
            raise ModelError(f"model {name!r} is a {spec.role}, not a face recognizer")


def _outcome(report: ProtectReport, faces: int = 0, output: bytes | None = None) -> PhotoOutcome:
    error = None if report.error is None else JobError(**report.error.model_dump())
    return PhotoOutcome(
        filename=report.file,
        status=report.status,
        faces=faces,
        output=output,
        report=report.to_dict(),
        error=error,
    )


def _refused(report: ProtectReport, status: str, code: str, message: str) -> PhotoOutcome:
    error = ReportError(code=code, message=message)
    return _outcome(report.model_copy(update={"status": status, "error": error}))


def _no_face(report: ProtectReport, found: FoundFaces, min_size: int) -> PhotoOutcome:
    if found.too_small:
        message = f"{len(found.too_small)} face(s) found, all smaller than {min_size} px"
        return _refused(report, "no_face", "faces_too_small", message)
    message = "no face was detected in this photo; nothing was protected"
    return _refused(report, "no_face", "no_face", message)


def protect_photo(
    data: bytes,
    filename: str,
    options: ProtectOptions,
    runtime: Runtime,
    progress: Progress | None = None,
) -> PhotoOutcome:
    """Protect one photo. Bad input comes back as a failed outcome, never as an exception.

    ``progress(done, total)`` counts attack steps over all faces (faces that stop early
    count their remaining steps as done); an exception it raises stops the attack and
    propagates (the runner raises ``JobCanceled`` from it).
    """
    start = time.perf_counter()
    report = ProtectReport(file=filename, status="failed")
    try:
        check_models(options, runtime)
        img = decode_image(data, runtime.max_pixels)
    except (ImageError, ModelError) as exc:
        return _refused(report, "failed", exc.code, str(exc))
    min_size = options.min_face_size or runtime.min_face_size
    found = find_faces(runtime, img.rgb, min_size)
    report = report.model_copy(
        update={
            "format": img.format,
            "size": [int(img.rgb.shape[1]), int(img.rgb.shape[0])],
            "min_face_size": min_size,
            "faces_too_small": len(found.too_small),
        }
    )
    if not found.faces:
        return _no_face(report, found, min_size)
    total = len(found.faces)
    cap = runtime.settings.max_faces_per_photo
    if cap and total > cap:
        message = (
            f"{total} faces found, more than the limit of {cap} per photo; "
            "crop the photo into parts with fewer faces"
        )
        return _refused(report, "failed", "too_many_faces", message)
    cloaker = build_cloaker(options, runtime)
    faces = face_inputs(runtime, img.rgb, found.faces, cloaker.cfg.makeup)
    result = cloaker.protect(img.rgb, faces, seed=options.seed, progress=progress)
    output = encode_image(result.rgb, img)
    report = _attack_report(report, options, cloaker.cfg, result, runtime)
    if options.verify:
        report = _verified(report, img, output, found.faces, options, runtime)
    elif not all(result.converged):
        report = _unconverged(report, options, result)
    elif options.visibility_cap is not None:
        report = _within_cap(report, img, output, found.faces, options, runtime)
    report.seconds = Seconds(
        attack=report.seconds.attack if report.seconds else None,
        total=round(time.perf_counter() - start, 2),
    )
    if report.status == "failed":
        return _outcome(report)
    return _outcome(report, total, output)


def _level(config: CloakConfig, face: int, result: CloakResult | None = None) -> float | None:
    """The luma budget (1/255 units) of the search level face ``face`` ended at."""
    plan = config.search
    if plan is None or result is None or result.levels is None:
        return None
    return round(plan.levels[result.levels[face]][0], 3)


def _attack_report(
    report: ProtectReport,
    options: ProtectOptions,
    config: CloakConfig,
    result: CloakResult,
    runtime: Runtime,
) -> ProtectReport:
    """The report with what the attack did."""
    names = list(dict.fromkeys([*options.surrogates, *options.eval_models]))
    return report.model_copy(
        update={
            "status": "protected",
            "objective": "dodging+decoy" if config.decoy else "dodging",
            "decoys": result.decoys or None,
            "attack": attack_summary(config, options.seed, options.surrogates),
            "faces": [
                FaceAttack(
                    steps=s, converged=c, region=list(r), luma_eps_255=_level(config, i, result)
                )
                for i, (s, c, r) in enumerate(
                    zip(result.steps, result.converged, result.regions, strict=True)
                )
            ],
            "models": {
                n: ModelUse(
                    role="surrogate" if n in options.surrogates else "evaluation",
                    licence=runtime.store.spec(n).licence,
                )
                for n in names
            },
            "metadata_stripped": True,
            "seconds": Seconds(attack=round(result.seconds, 2)),
        }
    )


def _verified(
    report: ProtectReport,
    img: DecodedImage,
    output: bytes,
    faces: list[Face],
    options: ProtectOptions,
    runtime: Runtime,
) -> ProtectReport:
    """The report with the verification table; failed when a surrogate still matches."""
    assert report.min_face_size is not None
    saved = decode_image(output, runtime.max_pixels).rgb
    names = list(dict.fromkeys([*options.surrogates, *options.eval_models]))
    table = verify_arrays(
        runtime,
        img.rgb,
        saved,
        names,
        report.min_face_size,
        ref_faces=faces,
        preset=options.strength,
        visibility_cap=options.visibility_cap,
    )
    report = report.model_copy(update={"verification": table})
    still = table.still_matched(options.surrogates)
    if any(still.values()):
        message = f"surrogates still match faces after protection: {still}"
        return _failed(report, options, "protection_incomplete", message)
    over = [i + 1 for i, f in enumerate(table.faces) if not f.visibility.within_cap]
    return _cap_verdict(report, options, over)


def _unconverged(
    report: ProtectReport, options: ProtectOptions, result: CloakResult
) -> ProtectReport:
    """Without verification the attack's own check is the evidence: a face that did not
    reach the margin on every surrogate is not protected, so neither is the photo."""
    short = [i + 1 for i, done in enumerate(result.converged) if not done]
    message = (
        f"the attack did not reach its margin on face(s) {short} within "
        f"{max(result.steps)} steps (verification off)"
    )
    return _failed(report, options, "protection_incomplete", message)


def _failed(
    report: ProtectReport, options: ProtectOptions, code: str, message: str
) -> ProtectReport:
    """The report as failed with ``code``, offering the next preset."""
    nxt = options.next_preset
    if nxt is not None:
        message += f"; try strength {nxt!r}"
    error = ReportError(code=code, message=message)
    return report.model_copy(update={"status": "failed", "error": error, "next_preset": nxt})


def _cap_verdict(report: ProtectReport, options: ProtectOptions, over: list[int]) -> ProtectReport:
    """Failed (``visibility_cap_exceeded``) when faces ``over`` (1-based) exceed the cap."""
    if not over:
        return report
    message = (
        f"no cloak within the {options.strength!r} visibility cap (as visible as a JPEG "
        f"q{options.visibility_cap} re-save) protects face(s) {over}"
    )
    return _failed(report, options, "visibility_cap_exceeded", message)


def _within_cap(
    report: ProtectReport,
    img: DecodedImage,
    output: bytes,
    faces: list[Face],
    options: ProtectOptions,
    runtime: Runtime,
) -> ProtectReport:
    """Without verification: still refuse a photo whose faces exceed the preset's cap."""
    saved = decode_image(output, runtime.max_pixels).rgb
    boxes = [(float(f.box[0]), float(f.box[1]), float(f.box[2]), float(f.box[3])) for f in faces]
    measured = [visibility.report(v) for v in visibility.photo_visibility(img.rgb, saved, boxes)]
    capped = [v.with_cap(options.strength, options.visibility_cap) for v in measured]
    return _cap_verdict(report, options, [i + 1 for i, v in enumerate(capped) if not v.within_cap])


def face_inputs(
    runtime: Runtime, rgb: np.ndarray, faces: list[Face], makeup: bool
) -> list[FaceInput]:
    """Attack inputs for detected faces (with 106 landmarks when makeup EOT is on)."""
    if not makeup:
        return [FaceInput(f.landmarks) for f in faces]
    lm = runtime.landmarks106()
    return [FaceInput(f.landmarks, lm.predict(rgb, f)) for f in faces]


def build_cloaker(
    options: ProtectOptions, runtime: Runtime, config: CloakConfig | None = None
) -> Cloaker:
    """A cloaker with the options' surrogates and thresholds and ``config`` (default: the
    options' preset).
    """
    config = config or cloak_config(options)
    surrogates = [runtime.recognizer(n) for n in options.surrogates]
    thresholds = {n: runtime.threshold(n) for n in options.surrogates}
    makeup = MakeupFilter(GROUPS) if config.makeup else None
    decoys = DecoyPicker(runtime) if config.decoy else None
    return Cloaker(surrogates, thresholds, config, runtime.device, makeup, decoys)
