"""Verification: does each model still match each face of the original in the protected photo?"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from facecloak.images import decode_image
from models.detection import Face
from workers.jobs import conditions, runtime
from workers.jobs.analysis import embed, find_faces, match_faces
from workers.jobs.quality import finite, psnr, ssim


def scaled_face(face: Face, s: float) -> Face:
    """The face with box and landmarks scaled by ``s`` (for resized photos)."""
    if s == 1.0:
        return face
    x1, y1, x2, y2 = face.box
    return Face(
        box=(x1 * s, y1 * s, x2 * s, y2 * s), score=face.score, landmarks=face.landmarks * s
    )


def _similarities(
    rgb: np.ndarray, ref_faces: list[Face], ref_emb: dict[str, np.ndarray], scale: float
) -> dict[str, list[float | None]]:
    """Cosine similarity of each reference face with its re-detected face in ``rgb``."""
    found = runtime.detector().detect(rgb)
    matched = match_faces([scaled_face(f, scale) for f in ref_faces], found)
    present = [f for f in matched if f is not None]
    out: dict[str, list[float | None]] = {}
    for model, ref in ref_emb.items():
        emb = embed(rgb, present, model)
        sims: list[float | None] = []
        j = 0
        for i, f in enumerate(matched):
            if f is None:
                sims.append(None)
            else:
                sims.append(float(emb[j] @ ref[i]))
                j += 1
        out[model] = sims
    return out


def face_region(face: Face, shape: tuple[int, ...], grow: float = 0.1) -> tuple[slice, slice]:
    """The face box grown by ``grow`` on each side, clipped to the photo."""
    x1, y1, x2, y2 = face.box
    gx, gy = (x2 - x1) * grow, (y2 - y1) * grow
    ys = slice(max(0, int(y1 - gy)), min(shape[0], int(np.ceil(y2 + gy))))
    xs = slice(max(0, int(x1 - gx)), min(shape[1], int(np.ceil(x2 + gx))))
    return ys, xs


def verify_arrays(
    original: np.ndarray,
    protected: np.ndarray,
    models: list[str],
    min_face_size: int,
    condition_names: tuple[str, ...] = conditions.CONDITIONS,
    ref_faces: list[Face] | None = None,
) -> dict[str, Any]:
    """The verification table for two decoded photos of the same size.

    ``ref_faces`` are the original's faces when the caller has already detected them.
    """
    start = time.perf_counter()
    if original.shape != protected.shape:
        raise ValueError(
            f"photos differ in size: {original.shape[1]}x{original.shape[0]} vs "
            f"{protected.shape[1]}x{protected.shape[0]}"
        )
    if ref_faces is None:
        ref_faces = find_faces(original, min_face_size).faces
    ref_emb = {m: embed(original, ref_faces, m) for m in models}
    thr = {m: runtime.threshold(m) for m in models}
    faces: list[dict[str, Any]] = []
    for f in ref_faces:
        ys, xs = face_region(f, original.shape)
        faces.append(
            {
                "box": [round(float(v), 1) for v in f.box],
                "psnr": finite(psnr(original[ys, xs], protected[ys, xs])),
                "ssim": round(ssim(original[ys, xs], protected[ys, xs]), 4),
                "models": {m: {} for m in models},
            }
        )
    for cond in condition_names:
        s = conditions.scale_of(cond)
        clean = _similarities(conditions.apply(original, cond), ref_faces, ref_emb, s)
        prot = _similarities(conditions.apply(protected, cond), ref_faces, ref_emb, s)
        for i, face in enumerate(faces):
            for m in models:
                p = prot[m][i]
                face["models"][m][cond] = {
                    "clean_similarity": _r(clean[m][i]),
                    "protected_similarity": _r(p),
                    "threshold": round(thr[m], 4),
                    "detected": p is not None,
                    "matched": p is not None and p >= thr[m],
                }
    summary = {
        m: {
            cond: sum(1 for f in faces if f["models"][m][cond]["matched"])
            for cond in condition_names
        }
        for m in models
    }
    return {
        "faces": faces,
        "matched_faces": summary,
        "psnr": finite(psnr(original, protected)),
        "ssim": round(ssim(original, protected), 4),
        "conditions": list(condition_names),
        "thresholds": {m: runtime.thresholds().get(m) for m in models},
        "seconds": round(time.perf_counter() - start, 2),
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def verify_pair(
    original: bytes, protected: bytes, models: list[str] | None = None
) -> dict[str, Any]:
    """Verification table for two encoded photos (``facecloak verify``, ``POST /v1/verify``)."""
    from facecloak.settings import get_settings

    settings = get_settings()
    a = decode_image(original, settings.max_pixels).rgb
    b = decode_image(protected, settings.max_pixels).rgb
    names = models or default_models()
    return verify_arrays(a, b, names, settings.min_face_size)


def default_models() -> list[str]:
    """Every recognizer with a calibrated threshold."""
    return list(runtime.thresholds().keys()) or ["w600k_mbf", "sface", "facenet"]


def format_table(table: dict[str, Any]) -> str:
    """The verification table as plain text, a block per face."""
    lines = [
        f"photo PSNR {table['psnr']} dB, SSIM {table['ssim']}, "
        f"{len(table['faces'])} face(s), {table['seconds']} s"
    ]
    for i, face in enumerate(table["faces"]):
        lines.append(f"face {i + 1} box {face['box']} PSNR {face['psnr']} dB SSIM {face['ssim']}")
        lines.append(
            f"  {'model':<12} {'condition':<10} {'clean':>7} {'protected':>9} {'thresh':>7}"
            "  matched"
        )
        for model, conds in face["models"].items():
            for cond, row in conds.items():
                prot = row["protected_similarity"]
                clean = row["clean_similarity"]
                lines.append(
                    f"  {model:<12} {cond:<10} {'-' if clean is None else f'{clean:.3f}':>7} "
                    f"{'not found' if prot is None else f'{prot:.3f}':>9} "
                    f"{row['threshold']:>7.3f}  "
                    f"{'YES' if row['matched'] else 'no'}"
                )
    return "\n".join(lines)
