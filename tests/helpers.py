"""Shared test helpers: where the real face photos are, and small image builders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
DEV = FACES / "dev"
TEST = FACES / "test"


def jpeg_bytes(rgb: np.ndarray, quality: int = 92, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
