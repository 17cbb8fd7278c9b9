"""Real-world transformations a protected photo meets after it is shared."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from models.landmarks106 import GROUPS
from workers.jobs.protect.makeup import MakeupFilter
from workers.jobs.runtime import Runtime

CONDITIONS: tuple[str, ...] = ("saved", "jpeg90", "jpeg75", "jpeg50", "resize0.5", "makeup")

# Fixed cosmetics for the reproducible "makeup" check: red lips, brown shadow, pink blush.
MAKEUP_COLOURS = ((0.70, 0.10, 0.20), (0.35, 0.22, 0.18), (0.90, 0.45, 0.50))
MAKEUP_INTENSITY = 0.45


def scale_of(condition: str) -> float:
    """How much the condition resizes the photo."""
    return 0.5 if condition == "resize0.5" else 1.0


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """A real Pillow JPEG re-save at ``quality`` (4:2:0, as platforms do)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def apply_makeup(runtime: Runtime, rgb: np.ndarray) -> np.ndarray:
    """Apply fixed lipstick, eyeshadow and blush to every detected face."""
    faces = runtime.detect(rgb)
    if not faces:
        return rgb
    lm = np.stack([runtime.landmarks106().predict(rgb, f) for f in faces])
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
    filt = MakeupFilter(GROUPS)
    out = x
    for i in range(len(faces)):
        pts = torch.from_numpy(lm[i : i + 1]).float()
        out = filt.apply(out, pts, *MAKEUP_COLOURS, MAKEUP_INTENSITY)
    arr = out[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    return np.ascontiguousarray(arr)


def apply(runtime: Runtime, rgb: np.ndarray, condition: str) -> np.ndarray:
    """The photo after ``condition`` (makeup needs the runtime's landmark model)."""
    if condition == "saved":
        return rgb
    if condition.startswith("jpeg"):
        return jpeg(rgb, int(condition[4:]))
    if condition == "resize0.5":
        h, w = rgb.shape[:2]
        small = Image.fromarray(rgb).resize(
            (max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS
        )
        return np.asarray(small)
    if condition == "makeup":
        return apply_makeup(runtime, rgb)
    raise ValueError(f"unknown condition {condition!r}")
