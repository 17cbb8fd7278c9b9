"""Find, align and embed the faces of a photo, as a recognizer pipeline would."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from models.alignment import align
from models.detection import Face
from workers.jobs.runtime import Runtime


@dataclass
class FoundFaces:
    """Faces at or above the minimum size, and those below it."""

    faces: list[Face]
    too_small: list[Face]


def find_faces(runtime: Runtime, rgb: np.ndarray, min_size: int) -> FoundFaces:
    """Detect every face; split by the minimum face size (shorter box side, pixels)."""
    found = runtime.detect(rgb, min_size)
    keep = [f for f in found if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_size]
    small = [f for f in found if f not in keep]
    return FoundFaces(keep, small)


def embed(runtime: Runtime, rgb: np.ndarray, faces: list[Face], model: str) -> np.ndarray:
    """Unit embeddings [n, d] of ``faces`` with recognizer ``model`` (numpy alignment)."""
    return embed_many(runtime, [(rgb, faces)], model)[0]


def embed_many(
    runtime: Runtime, photos: list[tuple[np.ndarray, list[Face]]], model: str
) -> list[np.ndarray]:
    """Unit embeddings ``[n_i, d]`` of the faces of each photo, in one batched forward
    (an evaluation-only recognizer runs its own pipeline on each photo)."""
    if runtime.is_evaluation_only(model):
        judge = runtime.dlib_recognizer(model)
        return [judge.embed(rgb, faces) for rgb, faces in photos]
    rec = runtime.recognizer(model)
    crops = [
        align(rgb, f.landmarks, rec.input_size, rec.spec.crop_scale)
        for rgb, faces in photos
        for f in faces
    ]
    if not crops:
        return [np.zeros((0, rec.spec.embedding_size), dtype=np.float32) for _ in photos]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255.0)
    with torch.no_grad():
        out = rec(x.to(runtime.device)).cpu().numpy()
    bounds = np.cumsum([0] + [len(faces) for _, faces in photos])
    return [out[a:b] for a, b in pairwise(bounds)]


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two x1,y1,x2,y2 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_faces(ref: list[Face], found: list[Face], min_iou: float = 0.3) -> list[Face | None]:
    """For each reference face, the found face overlapping it most (or None)."""
    out: list[Face | None] = []
    for r in ref:
        best = max(found, key=lambda f: box_iou(r.box, f.box), default=None)
        ok = best is not None and box_iou(r.box, best.box) >= min_iou
        out.append(best if ok else None)
    return out
