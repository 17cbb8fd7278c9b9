"""Shared test helpers: where the real face photos are, the process runtime, image builders."""

from __future__ import annotations

import io
import os
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
FACES = Path(os.environ.get("FACECLOAK_TEST_FACES") or REPO.parent / "shared" / "data" / "faces")
"""The shared real face photos: ``<repo>/../shared/data/faces`` (never copied into the repo;
``FACECLOAK_TEST_FACES`` points elsewhere). Tests reach them only through :func:`faces_dir`
and :func:`dev_photo`, so a fresh clone without them skips those tests with the reason."""
DEV = FACES / "dev"
TEST = FACES / "test"
_RUNTIMES: dict[tuple[int, int], Runtime] = {}


def faces_dir(split: str = "dev") -> Path:
    """``FACES / split``, skipping the calling test (or, at import, the module) without it."""
    folder = FACES / split
    if not folder.is_dir():
        pytest.skip(
            f"shared face photos not found at {folder} (expected <repo>/../shared/data/faces)",
            allow_module_level=True,
        )
    return folder


def shared_photo(split: str, name: str) -> Path:
    """A file of a shared split (skips the test, or the module at import, when absent)."""
    path = faces_dir(split) / name
    if not path.exists():
        pytest.skip(f"shared photo {path} not found", allow_module_level=True)
    return path


def dev_photo(name: str) -> Path:
    """A photo of the dev set (skips the test when the shared photos are absent)."""
    return shared_photo("dev", name)


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
