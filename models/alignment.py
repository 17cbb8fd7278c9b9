"""Five-point face alignment to the ArcFace template (similarity transform, bilinear warp).

Coordinates follow the OpenCV convention: pixel (i, j) has its centre at (x=j, y=i), so the
matrices here are interchangeable with ``cv2.warpAffine`` ones.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# The standard ArcFace destination for a 112x112 crop: left eye, right eye, nose,
# left mouth corner, right mouth corner (image-left first).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template(size: int, crop_scale: float = 1.0) -> np.ndarray:
    """The ArcFace template scaled to a ``size`` crop, shrunk about the centre by ``crop_scale``.

    ``crop_scale`` < 1 leaves more margin around the face (FaceNet uses 0.78).
    """
    pts = ARCFACE_TEMPLATE * (size / 112.0)
    centre = size / 2.0
    return (pts - centre) * crop_scale + centre


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) src -> dst.

    Umeyama (1991). Returns the (2, 3) float64 forward matrix ``M`` with
    ``dst ~ M[:, :2] @ src + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"expected two (N, 2) arrays, got {src.shape} and {dst.shape}")
    n = src.shape[0]
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / n
    scale = float((sig * d).sum() / var_src) if var_src > 0 else 1.0
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - scale * rot @ src_mean
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    a = np.asarray(m, dtype=np.float64)
    inv = np.linalg.inv(a[:, :2])
    return np.hstack([inv, (-inv @ a[:, 2])[:, None]])


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m)[:, 2]


def warp_crop(rgb: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 crop ``cv2.warpAffine(rgb, m, (size, size))`` would give.

    ``m`` maps photo to crop coordinates; sampling is bilinear, outside pixels are black.
    """
    inv = invert_affine(m)
    # only the part of the photo the crop sees goes through Pillow (cheap on 12 MP photos)
    h, w = rgb.shape[:2]
    corners = transform_points(np.array([[-1, -1], [size, -1], [-1, size], [size, size]]), inv)
    x0 = int(np.clip(np.floor(corners[:, 0].min()) - 1, 0, w))
    y0 = int(np.clip(np.floor(corners[:, 1].min()) - 1, 0, h))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()) + 2, 0, w))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()) + 2, 0, h))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, *rgb.shape[2:]), dtype=np.uint8)
    rgb = rgb[y0:y1, x0:x1]
    inv = inv.copy()
    inv[:, 2] -= (x0, y0)
    a, b, c = inv[0]
    d, e, f = inv[1]
    # Pillow maps output pixel centres (x + 0.5, y + 0.5) and samples at (u - 0.5, v - 0.5);
    # adjust the offsets so that integer coordinates are pixel centres, as in OpenCV.
    c = c - 0.5 * (a + b) + 0.5
    f = f - 0.5 * (d + e) + 0.5
    im = Image.fromarray(np.ascontiguousarray(rgb))
    out = im.transform(
        (size, size),
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0) if im.mode == "RGB" else 0,
    )
    return np.asarray(out)


def alignment_matrix(landmarks: np.ndarray, size: int, crop_scale: float = 1.0) -> np.ndarray:
    """The (2, 3) photo -> crop matrix that puts five landmarks on the scaled template."""
    return estimate_similarity(np.asarray(landmarks, dtype=np.float64), template(size, crop_scale))


def align(rgb: np.ndarray, landmarks: np.ndarray, size: int, crop_scale: float = 1.0) -> np.ndarray:
    """A (size, size, 3) uint8 aligned face crop from five (5, 2) landmarks."""
    return warp_crop(rgb, alignment_matrix(landmarks, size, crop_scale), size)
