"""Shared test helpers: where the real face photos are, the process runtime, image builders."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from facecloak.settings import Settings
    from models.registry import ModelStore
    from workers.jobs.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"
"""The shared real face photos: ``<repo>/../shared/data/faces`` (never copied into the repo)."""
DEV = FACES / "dev"
TEST = FACES / "test"
_RUNTIMES: dict[tuple[int, int], Runtime] = {}


def faces_dir(split: str = "dev") -> Path:
    """``FACES / split``, skipping the calling test when the shared photos are absent."""
    folder = FACES / split
    if not folder.is_dir():
        pytest.skip(
            f"shared face photos not found at {folder} (expected <repo>/../shared/data/faces)"
        )
    return folder


def dev_photo(name: str) -> Path:
    """A photo of the dev set (skips the test when the shared photos are absent)."""
    path = faces_dir("dev") / name
    if not path.exists():
        pytest.skip(f"shared photo {path} not found")
    return path


def runtime_for(settings: Settings, store: ModelStore) -> Runtime:
    """One ``Runtime`` per (settings, store) for the whole test session (models load once)."""
    from workers.jobs.runtime import Runtime

    key = (id(settings), id(store))
    if key not in _RUNTIMES:
        _RUNTIMES[key] = Runtime(settings, store)
    return _RUNTIMES[key]


def jpeg_bytes(rgb: np.ndarray, quality: int = 92, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
