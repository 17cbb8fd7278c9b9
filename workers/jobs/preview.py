"""A before / after / amplified-perturbation strip so a person can see what changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facecloak.images import decode_image

AMPLIFY = 10.0


def preview_strip(before: np.ndarray, after: np.ndarray, max_width: int = 1800) -> Image.Image:
    """Three panels side by side: original, protected, 10x amplified difference around grey."""
    diff = after.astype(np.float32) - before.astype(np.float32)
    amplified = np.clip(128.0 + AMPLIFY * diff, 0, 255).astype(np.uint8)
    strip = np.concatenate([before, after, amplified], axis=1)
    img = Image.fromarray(strip)
    if img.width > max_width:
        img = img.resize(
            (max_width, max(1, round(img.height * max_width / img.width))), Image.Resampling.LANCZOS
        )
    return img


def write_preview(original: bytes, protected: bytes, path: Path, max_pixels: int) -> None:
    """Write the preview PNG for two encoded photos."""
    before = decode_image(original, max_pixels).rgb
    preview_strip(before, decode_image(protected, max_pixels).rgb).save(path, "PNG")
