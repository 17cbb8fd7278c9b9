"""How visible a protection is, face by face: PSNR, SSIM, FLIP and a JPEG-quality equivalent.

Every number is measured on the face box widened by 30% (15% on each side, clipped to the
photo), so the background an attack leaves alone does not dilute it.

- PSNR over the three 8-bit channels.
- SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) on BT.601 luma,
  scikit-image's ``structural_similarity``.
- FLIP (NVIDIA ``flip-evaluator``, LDR mode: inputs are 8-bit sRGB scaled to [0, 1]) at 67
  pixels per degree, FLIP's default (a 0.7 m viewing distance from a 24" 4K monitor); its
  mean over the crop is 0 for identical images and grows towards 1.
- ``jpeg_equivalent``: the Pillow JPEG quality (4:2:0, as platforms re-save) whose re-save
  of the ORIGINAL crop has the same FLIP as the protected crop, found by interpolation
  search (bisection when it stalls) over 50..100: "as visible as a JPEG q80 re-save";
  ``below_min`` when worse than q50.

Numpy, Pillow, scikit-image and flip-evaluator only: no torch. ``report`` turns a
measurement into the report model (``facecloak.contract.reports.FaceVisibility``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import flip_evaluator
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from facecloak.contract import reports

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in photo pixels

FLIP_PPD = 67.0  # FLIP's default pixels per degree
MIN_QUALITY, MAX_QUALITY = 50, 100
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class JpegEquivalent:
    """The JPEG quality whose re-save of the original is as visible as the protection."""

    quality: int  # in MIN_QUALITY..MAX_QUALITY; MIN_QUALITY when below_min
    below_min: bool  # more visible than a re-save at MIN_QUALITY

    def __str__(self) -> str:
        return f"<q{self.quality}" if self.below_min else f"q{self.quality}"


@dataclass(frozen=True)
class FaceVisibility:
    """Visibility of the change to one face."""

    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive): the widened box measured
    psnr: float  # dB over RGB; inf when identical
    ssim: float  # on luma
    flip: float  # mean FLIP, 0 when identical
    jpeg_equivalent: JpegEquivalent


def report(vis: FaceVisibility) -> reports.FaceVisibility:
    """``vis`` as the report model (rounded; PSNR None when identical), with no cap yet."""
    return reports.FaceVisibility(
        box=list(vis.crop),
        flip=round(vis.flip, 5),
        ssim=round(vis.ssim, 4),
        psnr=round(vis.psnr, 3) if math.isfinite(vis.psnr) else None,
        jpeg_equivalent=vis.jpeg_equivalent.quality,
        below_min=vis.jpeg_equivalent.below_min,
    )


def widened_box(box: Box, shape: tuple[int, ...], grow: float = 0.3) -> tuple[int, int, int, int]:
    """``box`` grown by ``grow`` of its width and height in total, clipped to the photo."""
    x1, y1, x2, y2 = box
    gx, gy = (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
    h, w = shape[:2]
    x0, y0 = max(0, math.floor(x1 - gx)), max(0, math.floor(y1 - gy))
    xe, ye = min(w, math.ceil(x2 + gx)), min(h, math.ceil(y2 + gy))
    if xe <= x0 or ye <= y0:
        raise ValueError(f"face box {box} lies outside the {w}x{h} photo")
    return x0, y0, xe, ye


def as_rgb8(img: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 array (a 2-D grayscale image is repeated over three channels)."""
    if img.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected HxW or HxWx3 pixels, got shape {img.shape}")
    return np.ascontiguousarray(img)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def luma_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two HxWx3 uint8 images on BT.601 luma (1.0 for crops under 7 px)."""
    ya, yb = a.astype(np.float64) @ _LUMA, b.astype(np.float64) @ _LUMA
    if min(ya.shape) < 7:
        return 1.0 if np.array_equal(a, b) else float("nan")
    return float(
        structural_similarity(
            ya,
            yb,
            data_range=255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def flip(a: np.ndarray, b: np.ndarray, ppd: float = FLIP_PPD) -> float:
    """Mean LDR FLIP error between two HxWx3 uint8 sRGB images."""
    if np.array_equal(a, b):
        return 0.0
    ref = a.astype(np.float32) / 255.0
    test = b.astype(np.float32) / 255.0
    _, mean, _ = flip_evaluator.evaluate(
        ref, test, "LDR", applyMagma=False, parameters={"ppd": float(ppd)}
    )
    return float(mean)


def jpeg_resave(rgb: np.ndarray, quality: int) -> np.ndarray:
    """A Pillow JPEG re-save of an HxWx3 uint8 image (4:2:0, Pillow's default)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def jpeg_equivalent(
    original: np.ndarray, target_flip: float, ppd: float = FLIP_PPD, rel_tol: float = 0.02
) -> JpegEquivalent:
    """The quality whose re-save of ``original`` has FLIP closest to ``target_flip``.

    FLIP falls smoothly as quality rises, so an interpolation search on the bracketing
    qualities (bisection when it stalls) finds it in about 4-5 encodes, stopping early
    within ``rel_tol`` of the target.
    """
    rgb = as_rgb8(original)
    cache: dict[int, float] = {}

    def cost(q: int) -> float:
        if q not in cache:
            cache[q] = flip(rgb, jpeg_resave(rgb, q), ppd)
        return cache[q]

    lo, hi = MIN_QUALITY, MAX_QUALITY
    if target_flip > cost(lo):
        return JpegEquivalent(lo, below_min=True)
    if target_flip <= cost(hi):
        return JpegEquivalent(hi, below_min=False)
    interpolate = True
    while hi - lo > 1:  # invariant: cost(lo) >= target > cost(hi)
        if interpolate:
            t = (cost(lo) - target_flip) / max(cost(lo) - cost(hi), 1e-12)
            mid = min(hi - 1, max(lo + 1, round(lo + t * (hi - lo))))
        else:
            mid = (lo + hi) // 2
        width = hi - lo
        if abs(cost(mid) - target_flip) <= rel_tol * target_flip:
            return JpegEquivalent(mid, below_min=False)
        if cost(mid) >= target_flip:
            lo = mid
        else:
            hi = mid
        interpolate = hi - lo <= width // 2  # bisect once after a step that did not halve
    best = lo if cost(lo) - target_flip <= target_flip - cost(hi) else hi
    return JpegEquivalent(best, below_min=False)


def jpeg_flips(
    original: np.ndarray, qualities: tuple[int, ...] = (90, 75, 50), ppd: float = FLIP_PPD
) -> dict[int, float]:
    """FLIP of a JPEG re-save of ``original`` at each quality: "as visible as" levels."""
    rgb = as_rgb8(original)
    return {q: flip(rgb, jpeg_resave(rgb, q), ppd) for q in qualities}


def crop_visibility(
    original: np.ndarray, protected: np.ndarray, ppd: float = FLIP_PPD
) -> tuple[float, float, float, JpegEquivalent]:
    """PSNR, luma SSIM, FLIP and JPEG equivalent of two same-size crops."""
    a, b = as_rgb8(original), as_rgb8(protected)
    if a.shape != b.shape:
        raise ValueError(f"crops differ in size: {a.shape} vs {b.shape}")
    f = flip(a, b, ppd)
    return psnr(a, b), luma_ssim(a, b), f, jpeg_equivalent(a, f, ppd)


def face_visibility(
    original: np.ndarray, protected: np.ndarray, box: Box, grow: float = 0.3, ppd: float = FLIP_PPD
) -> FaceVisibility:
    """Visibility of the change to the face in ``box`` (measured on the widened box)."""
    if original.shape != protected.shape:
        raise ValueError(f"photos differ in size: {original.shape} vs {protected.shape}")
    x0, y0, x1, y1 = widened_box(box, original.shape, grow)
    p, s, f, q = crop_visibility(original[y0:y1, x0:x1], protected[y0:y1, x0:x1], ppd)
    return FaceVisibility((x0, y0, x1, y1), p, s, f, q)


def photo_visibility(
    original: np.ndarray, protected: np.ndarray, boxes: list[Box], grow: float = 0.3
) -> list[FaceVisibility]:
    """Visibility of every face of a photo, in the order of ``boxes``."""
    return [face_visibility(original, protected, b, grow) for b in boxes]
