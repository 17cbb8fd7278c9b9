"""The protect job: decode a photo, cloak every face, save it in its own format, verify, report."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from facecloak.contract.options import JobError, PhotoOutcome, ProtectOptions
from facecloak.images import ImageError, decode_image, encode_image
from facecloak.settings import get_settings
from models.detection import Face
from models.errors import ModelError
from models.landmarks106 import GROUPS
from models.registry import get_spec
from workers.engine import MakeupFilter
from workers.jobs import runtime
from workers.jobs.analysis import find_faces
from workers.jobs.cloak import CloakConfig, Cloaker, FaceInput
from workers.jobs.verify import verify_arrays

Progress = Callable[[int, int], None]


def cloak_config(options: ProtectOptions) -> CloakConfig:
    """Attack settings for the chosen preset and overrides."""
    eps, steps = options.budget()
    return CloakConfig(
        eps=eps,
        steps=steps,
        eot_jpeg=options.eot_jpeg,
        eot_rescale=options.eot_rescale,
        eot_makeup=options.eot_makeup,
        decoy=options.decoy,
    )


def check_models(options: ProtectOptions) -> None:
    """Raise ModelError for an unknown model or one that is not a recognizer."""
    for name in [*options.surrogates, *options.eval_models]:
        spec = get_spec(name)
        if spec.role != "recognizer":
            raise ModelError(f"model {name!r} is a {spec.role}, not a face recognizer")


def _failed(filename: str, code: str, message: str, **report: Any) -> PhotoOutcome:
    return PhotoOutcome(
        filename=filename,
        status="failed",
        error=JobError(code=code, message=message),
        report={
            "file": filename,
            "status": "failed",
            "error": {"code": code, "message": message},
            **report,
        },
    )


def protect_photo(
    data: bytes, filename: str, options: ProtectOptions, progress: Progress | None = None
) -> PhotoOutcome:
    """Protect one photo. Bad input comes back as a failed outcome, never as an exception."""
    start = time.perf_counter()
    settings = get_settings()
    try:
        check_models(options)
        img = decode_image(data, settings.max_pixels)
    except (ImageError, ModelError) as exc:
        return _failed(filename, exc.code, str(exc))
    min_size = options.min_face_size or settings.min_face_size
    found = find_faces(img.rgb, min_size)
    base = {
        "file": filename,
        "format": img.format,
        "size": [int(img.rgb.shape[1]), int(img.rgb.shape[0])],
        "min_face_size": min_size,
        "faces_too_small": len(found.too_small),
    }
    if not found.faces:
        code = "faces_too_small" if found.too_small else "no_face"
        message = (
            f"{len(found.too_small)} face(s) found, all smaller than {min_size} px"
            if found.too_small
            else "no face was detected in this photo; nothing was protected"
        )
        return PhotoOutcome(
            filename=filename,
            status="no_face",
            error=JobError(code=code, message=message),
            report={**base, "status": "no_face", "error": {"code": code, "message": message}},
        )
    total = len(found.faces)
    if progress:
        progress(0, total)
    faces = face_inputs(img.rgb, found.faces, options.eot_makeup)
    cloaker = build_cloaker(options)
    config = cloaker.cfg
    result = cloaker.protect(img.rgb, faces, seed=options.seed)
    if progress:
        progress(total, total)
    output = encode_image(result.rgb, img)
    report: dict[str, Any] = {
        **base,
        "objective": "dodging+decoy" if options.decoy else "dodging",
        **({"decoys": result.decoys} if result.decoys else {}),
        "attack": {
            "method": "DI-MI-FGSM with EOT (JPEG, rescale, makeup) on the full-resolution photo",
            "margin": config.margin,
            "eps_255": round(config.eps * 255, 3),
            "alpha_255": round(config.eps * config.alpha_ratio * 255, 3),
            "max_steps": config.steps,
            "seed": options.seed,
            "surrogates": options.surrogates,
            "eot": {
                "jpeg": config.eot_jpeg,
                "rescale": config.eot_rescale,
                "makeup": config.eot_makeup,
            },
        },
        "faces": [
            {"steps": s, "converged": c, "region": list(r)}
            for s, c, r in zip(result.steps, result.converged, result.regions, strict=True)
        ],
        "models": {
            n: {
                "role": "surrogate" if n in options.surrogates else "evaluation",
                "licence": get_spec(n).licence,
            }
            for n in [*options.surrogates, *options.eval_models]
        },
        "metadata_stripped": True,
        "seconds": {"attack": round(result.seconds, 2)},
    }
    status = "protected"
    if options.verify:
        saved = decode_image(output, settings.max_pixels).rgb
        names = list(dict.fromkeys([*options.surrogates, *options.eval_models]))
        verification = verify_arrays(img.rgb, saved, names, min_size, ref_faces=found.faces)
        report["verification"] = verification
        still = {m: verification["matched_faces"][m]["saved"] for m in options.surrogates}
        if any(still.values()):
            status = "failed"
            report["seconds"]["total"] = round(time.perf_counter() - start, 2)
            return _failed(
                filename,
                "protection_incomplete",
                f"surrogates still match faces after protection: {still}",
                **report,
            )
    report["status"] = status
    report["seconds"]["total"] = round(time.perf_counter() - start, 2)
    return PhotoOutcome(
        filename=filename, status="protected", faces=total, output=output, report=report
    )


def face_inputs(rgb: np.ndarray, faces: list[Face], makeup: bool) -> list[FaceInput]:
    """Attack inputs for detected faces (with 106 landmarks when makeup EOT is on)."""
    if not makeup:
        return [FaceInput(f.landmarks) for f in faces]
    lm = runtime.landmarks106()
    return [FaceInput(f.landmarks, lm.predict(rgb, f)) for f in faces]


def build_cloaker(options: ProtectOptions) -> Cloaker:
    """A cloaker with the options' surrogates, thresholds and attack settings."""
    surrogates = [runtime.recognizer(n) for n in options.surrogates]
    thr = {n: runtime.threshold(n) for n in options.surrogates}
    makeup = MakeupFilter(GROUPS) if options.eot_makeup else None
    return Cloaker(surrogates, thr, cloak_config(options), runtime.device(), makeup)
