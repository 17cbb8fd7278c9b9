"""Labelled face sets: a folder of photos plus ``identities.json`` (person -> file names)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecloak.images import decode_image
from models.detection import Face
from workers.jobs.runtime import Runtime


@dataclass
class LabelledPhoto:
    """One photo, its person, and the face that shows that person (the largest face)."""

    path: Path
    person: str
    rgb: np.ndarray
    face: Face | None


def _largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)


def load_faceset(runtime: Runtime, folder: Path) -> list[LabelledPhoto]:
    """Read every labelled photo of ``folder`` and detect its main face."""
    ids = json.loads((folder / "identities.json").read_text())
    photos = []
    for person, names in sorted(ids.items()):
        for name in names:
            path = folder / name
            rgb = decode_image(path.read_bytes(), runtime.max_pixels).rgb
            photos.append(LabelledPhoto(path, person, rgb, _largest(runtime.detect(rgb))))
    return photos


def load_unlabelled(
    runtime: Runtime, folder: Path, limit: int | None = None
) -> list[LabelledPhoto]:
    """Photos of people outside the labelled sets (negatives only), one face each."""
    out = []
    for path in sorted(folder.glob("*.jp*g"))[:limit]:
        rgb = decode_image(path.read_bytes(), runtime.max_pixels).rgb
        face = _largest(runtime.detect(rgb))
        if face is not None:
            out.append(LabelledPhoto(path, f"unknown:{path.stem}", rgb, face))
    return out
