"""Verification: does each model still match each face of the original in the protected photo?

Each face of the original also gets its visibility (FLIP, SSIM, PSNR, JPEG equivalent),
measured on the protected photo as given (the protect job passes the saved file, decoded).
"""

from __future__ import annotations

import time

import numpy as np

from facecloak.contract.reports import (
    Calibration,
    ConditionCheck,
    FaceVerification,
    FaceVisibility,
    Verification,
)
from facecloak.images import decode_image
from models.detection import Face
from workers.jobs import conditions, visibility
from workers.jobs.analysis import embed, embed_many, find_faces, match_faces
from workers.jobs.quality import finite, psnr, ssim
from workers.jobs.runtime import Runtime

Similarities = dict[str, list[float | None]]


def scaled_face(face: Face, s: float) -> Face:
    """The face with box and landmarks scaled by ``s`` (for resized photos)."""
    if s == 1.0:
        return face
    x1, y1, x2, y2 = face.box
    return Face(
        box=(x1 * s, y1 * s, x2 * s, y2 * s), score=face.score, landmarks=face.landmarks * s
    )


def _similarities(
    runtime: Runtime,
    photos: list[np.ndarray],
    ref_faces: list[Face],
    ref_emb: dict[str, np.ndarray],
    scales: list[float],
) -> list[Similarities]:
    """Per photo: cosine similarity of each reference face with its re-detected face.

    The faces of all photos go through each recognizer in one batch.
    """
    matched = [
        match_faces([scaled_face(f, s) for f in ref_faces], runtime.detect(rgb))
        for rgb, s in zip(photos, scales, strict=True)
    ]
    present = [[f for f in found if f is not None] for found in matched]
    out: list[Similarities] = [{} for _ in photos]
    for model, ref in ref_emb.items():
        embs = embed_many(runtime, list(zip(photos, present, strict=True)), model)
        for k, (found, emb) in enumerate(zip(matched, embs, strict=True)):
            it = iter(emb)
            out[k][model] = [
                None if f is None else float(next(it) @ ref[i]) for i, f in enumerate(found)
            ]
    return out


def face_region(face: Face, shape: tuple[int, ...], grow: float = 0.1) -> tuple[slice, slice]:
    """The face box grown by ``grow`` on each side, clipped to the photo."""
    x1, y1, x2, y2 = face.box
    gx, gy = (x2 - x1) * grow, (y2 - y1) * grow
    ys = slice(max(0, int(y1 - gy)), min(shape[0], int(np.ceil(y2 + gy))))
    xs = slice(max(0, int(x1 - gx)), min(shape[1], int(np.ceil(x2 + gx))))
    return ys, xs


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _check(clean: float | None, protected: float | None, threshold: float) -> ConditionCheck:
    return ConditionCheck(
        clean_similarity=_r(clean),
        protected_similarity=_r(protected),
        threshold=round(threshold, 4),
        detected=protected is not None,
        matched=protected is not None and protected >= threshold,
    )


def _face_rows(
    original: np.ndarray,
    protected: np.ndarray,
    ref_faces: list[Face],
    models: list[str],
    cap: tuple[str | None, int | None],
) -> list[FaceVerification]:
    rows = []
    for f in ref_faces:
        box = (float(f.box[0]), float(f.box[1]), float(f.box[2]), float(f.box[3]))
        vis = visibility.report(visibility.face_visibility(original, protected, box))
        vis = vis.with_cap(*cap)
        rows.append(
            FaceVerification(
                box=[round(v, 1) for v in box],
                psnr=vis.psnr,
                ssim=vis.ssim,
                visibility=vis,
                models={m: {} for m in models},
            )
        )
    return rows


def verify_arrays(
    runtime: Runtime,
    original: np.ndarray,
    protected: np.ndarray,
    models: list[str],
    min_face_size: int,
    condition_names: tuple[str, ...] = conditions.CONDITIONS,
    ref_faces: list[Face] | None = None,
    preset: str | None = None,
    visibility_cap: int | None = None,
) -> Verification:
    """The verification table for two decoded photos of the same size.

    ``ref_faces`` are the original's faces when the caller has already detected them;
    ``preset`` and ``visibility_cap`` (a JPEG quality) are recorded in each face's
    visibility, which says whether the face stays within the cap.
    """
    start = time.perf_counter()
    if original.shape != protected.shape:
        raise ValueError(
            f"photos differ in size: {original.shape[1]}x{original.shape[0]} vs "
            f"{protected.shape[1]}x{protected.shape[0]}"
        )
    if ref_faces is None:
        ref_faces = find_faces(runtime, original, min_face_size).faces
    ref_emb = {m: embed(runtime, original, ref_faces, m) for m in models}
    thr = {m: runtime.threshold(m) for m in models}
    faces = _face_rows(original, protected, ref_faces, models, (preset, visibility_cap))
    photos, scales = [], []
    for cond in condition_names:
        photos += [conditions.apply(runtime, img, cond) for img in (original, protected)]
        scales += [conditions.scale_of(cond)] * 2
    sims = _similarities(runtime, photos, ref_faces, ref_emb, scales)
    for k, cond in enumerate(condition_names):
        clean, prot = sims[2 * k], sims[2 * k + 1]
        for i, face in enumerate(faces):
            for m in models:
                face.models[m][cond] = _check(clean[m][i], prot[m][i], thr[m])
    calibration = runtime.thresholds()
    return Verification(
        faces=faces,
        matched_faces={
            m: {c: sum(f.models[m][c].matched for f in faces) for c in condition_names}
            for m in models
        },
        psnr=finite(psnr(original, protected)),
        ssim=round(ssim(original, protected), 4),
        conditions=list(condition_names),
        thresholds={
            m: Calibration.model_validate(calibration[m]) if m in calibration else None
            for m in models
        },
        seconds=round(time.perf_counter() - start, 2),
    )


def verify_pair(
    original: bytes, protected: bytes, models: list[str] | None, runtime: Runtime
) -> Verification:
    """Verification table for two encoded photos (``facecloak verify``, ``POST /v1/verify``)."""
    a = decode_image(original, runtime.max_pixels).rgb
    b = decode_image(protected, runtime.max_pixels).rgb
    names = models or default_models(runtime)
    return verify_arrays(runtime, a, b, names, runtime.min_face_size)


def default_models(runtime: Runtime) -> list[str]:
    """Every recognizer with a calibrated threshold."""
    return list(runtime.thresholds().keys()) or ["w600k_mbf", "sface", "facenet"]


def visibility_text(vis: FaceVisibility) -> str:
    """One line: FLIP, SSIM, PSNR, the JPEG equivalent and the cap."""
    text = (
        f"FLIP {vis.flip:.4f} SSIM {vis.ssim} PSNR {vis.psnr} dB, as visible as a JPEG "
        f"{'<' if vis.below_min else ''}q{vis.jpeg_equivalent} re-save"
    )
    if vis.visibility_cap is not None:
        verdict = "within" if vis.within_cap else "OVER"
        text += f" ({vis.preset or 'cap'} q{vis.visibility_cap}: {verdict})"
    return text


def format_table(table: Verification) -> str:
    """The verification table as plain text, a block per face."""
    lines = [
        f"photo PSNR {table.psnr} dB, SSIM {table.ssim}, "
        f"{len(table.faces)} face(s), {table.seconds} s"
    ]
    for i, face in enumerate(table.faces):
        lines.append(f"face {i + 1} box {face.box} {visibility_text(face.visibility)}")
        lines.append(
            f"  {'model':<12} {'condition':<10} {'clean':>7} {'protected':>9} {'thresh':>7}"
            "  matched"
        )
        for model, conds in face.models.items():
            for cond, row in conds.items():
                prot, clean = row.protected_similarity, row.clean_similarity
                lines.append(
                    f"  {model:<12} {cond:<10} {'-' if clean is None else f'{clean:.3f}':>7} "
                    f"{'not found' if prot is None else f'{prot:.3f}':>9} "
                    f"{row.threshold:>7.3f}  "
                    f"{'YES' if row.matched else 'no'}"
                )
    return "\n".join(lines)
