"""Real-world transformations a protected photo meets after it is shared.

Re-saves and resizing (``jpeg90/75/50``, ``resize0.5``), cosmetics (``makeup``) and the
clean-ups an attacker can run to strip a perturbation (``median3``: 3x3 median filter,
``blur1``: Gaussian blur sigma 1, ``bits5``: 5-bit colour depth, i.e. feature squeezing).
All are real operations on uint8 photos (Pillow, scipy), never the differentiable ones.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from models.landmarks106 import GROUPS
from workers.jobs.protect.makeup import MakeupFilter
from workers.jobs.runtime import Runtime

CLEANUPS: tuple[str, ...] = ("median3", "blur1", "bits5")
CONDITIONS: tuple[str, ...] = (
    "saved",
    "jpeg90",
    "jpeg75",
    "jpeg50",
    "resize0.5",
    "makeup",
    *CLEANUPS,
)

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


def _med3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def median3(rgb: np.ndarray) -> np.ndarray:
    """3x3 median filter of each channel (edges mirrored), the exact result of
    ``scipy.ndimage.median_filter(rgb, (3, 3, 1), mode="mirror")`` about 10x faster: each
    column of three is sorted, then the median of 9 is the median of (the largest low, the
    median middle, the smallest high) of three neighbouring columns."""
    p = np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    top, centre, bottom = p[:-2], p[1:-1], p[2:]
    low, high = np.minimum(top, centre), np.maximum(top, centre)
    mid, high = np.minimum(high, bottom), np.maximum(high, bottom)
    low, mid = np.minimum(low, mid), np.maximum(low, mid)
    w = rgb.shape[1]
    cols = [slice(k, k + w) for k in range(3)]
    lows = np.maximum(np.maximum(low[:, cols[0]], low[:, cols[1]]), low[:, cols[2]])
    mids = _med3(mid[:, cols[0]], mid[:, cols[1]], mid[:, cols[2]])
    highs = np.minimum(np.minimum(high[:, cols[0]], high[:, cols[1]]), high[:, cols[2]])
    return _med3(lows, mids, highs)


def blur1(rgb: np.ndarray) -> np.ndarray:
    """Gaussian blur, sigma 1 px, of each channel (edges mirrored), rounded to 8 bits."""
    out = gaussian_filter(rgb.astype(np.float32), sigma=(1.0, 1.0, 0.0), mode="mirror")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def bit_depth(rgb: np.ndarray, bits: int) -> np.ndarray:
    """Colour depth reduced to ``bits`` per channel, levels spread over 0..255 (Xu et al.)."""
    levels = 2**bits - 1
    squeezed = np.rint(rgb.astype(np.float32) * (levels / 255.0))
    return np.rint(squeezed * (255.0 / levels)).astype(np.uint8)


def _makeup_region(
    face_box: tuple[float, ...], shape: tuple[int, ...], margin: float
) -> tuple[slice, slice]:
    """The face box grown by 15% a side plus ``margin`` px, clipped: all makeup lies inside."""
    x1, y1, x2, y2 = face_box
    gx, gy = (x2 - x1) * 0.15 + margin, (y2 - y1) * 0.15 + margin
    ys = slice(max(0, int(y1 - gy)), min(shape[0], int(np.ceil(y2 + gy))))
    xs = slice(max(0, int(x1 - gx)), min(shape[1], int(np.ceil(x2 + gx))))
    return ys, xs


def apply_makeup(runtime: Runtime, rgb: np.ndarray) -> np.ndarray:
    """Apply fixed lipstick, eyeshadow and blush to every detected face.

    Each face is made up on a crop around it, with the feathering the whole photo would
    get (1.2% of its shorter side), so the cost follows the faces, not the photo.
    """
    faces = runtime.detect(rgb)
    if not faces:
        return rgb
    sigma = max(1.0, 0.012 * min(rgb.shape[:2]))
    filt = MakeupFilter(GROUPS, feather_sigma=sigma)
    out = rgb.copy()
    for face in faces:
        lm = runtime.landmarks106().predict(rgb, face)
        ys, xs = _makeup_region(face.box, rgb.shape, 3 * sigma + 2)
        crop = torch.from_numpy(out[ys, xs]).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
        pts = torch.from_numpy(lm - np.array([xs.start, ys.start])).float().unsqueeze(0)
        made = filt.apply(crop, pts, *MAKEUP_COLOURS, MAKEUP_INTENSITY)
        out[ys, xs] = made[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    return out


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
    if condition == "median3":
        return median3(rgb)
    if condition == "blur1":
        return blur1(rgb)
    if condition == "bits5":
        return bit_depth(rgb, 5)
    raise ValueError(f"unknown condition {condition!r}")
