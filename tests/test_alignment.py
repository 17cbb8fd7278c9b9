"""Five-point alignment: template, Umeyama similarity, warp, and aligned real photos."""

from __future__ import annotations

import numpy as np
import pytest

from facecloak.images import decode_image
from models.alignment import (
    ARCFACE_TEMPLATE,
    align,
    alignment_matrix,
    estimate_similarity,
    invert_affine,
    template,
    transform_points,
    warp_crop,
)
from models.detection import load_detector
from models.errors import ModelUnavailableError
from models.registry import ModelStore

from .helpers import FACES


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def test_template() -> None:
    np.testing.assert_allclose(template(112), ARCFACE_TEMPLATE)
    np.testing.assert_allclose(template(224), ARCFACE_TEMPLATE * 2)
    t = template(160, 0.78)
    np.testing.assert_allclose(t, (ARCFACE_TEMPLATE * 160 / 112 - 80) * 0.78 + 80)
    # shrinking about the centre keeps the centre and reduces the eye distance
    assert np.linalg.norm(t[1] - t[0]) < np.linalg.norm(template(160)[1] - template(160)[0])


def test_estimate_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 500, (5, 2))
    m = _similarity(0.37, 0.4, 12.0, -30.0)
    dst = transform_points(src, m)
    np.testing.assert_allclose(estimate_similarity(src, dst), m, atol=1e-9)
    np.testing.assert_allclose(transform_points(dst, invert_affine(m)), src, atol=1e-9)


def test_estimate_similarity_never_reflects() -> None:
    src = ARCFACE_TEMPLATE.copy()
    mirrored = src * np.array([-1.0, 1.0]) + np.array([112.0, 0.0])
    m = estimate_similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(ValueError):
        estimate_similarity(src, src[:4])


def test_warp_crop_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)  # smooth, so rounding is the only difference
    for m in (_similarity(0.5, 0.3, -20, 15), _similarity(1.7, -0.2, -150, -90)):
        ours = warp_crop(img, m, 112).astype(int)
        ref = cv2.warpAffine(img, m, (112, 112), flags=cv2.INTER_LINEAR).astype(int)
        # compare where the source point is well inside the photo (edges: fill conventions)
        yy, xx = np.mgrid[0:112, 0:112]
        src = transform_points(np.stack([xx.ravel(), yy.ravel()], 1), invert_affine(m))
        ok = ((src > 1) & (src < np.array([398, 298]))).all(1).reshape(112, 112)
        assert ok.mean() > 0.3
        assert np.abs(ours[ok] - ref[ok]).max() <= 2


def test_aligned_crops_put_the_eyes_on_the_template(model_store: ModelStore) -> None:
    path = FACES / "dev" / "img62.jpg"
    if not path.exists():
        pytest.skip("face photos not found")
    try:
        yunet, scrfd = load_detector("yunet", model_store), load_detector("scrfd_500m", model_store)
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    rgb = decode_image(path.read_bytes()).rgb
    for face in yunet.detect(rgb)[:2]:
        for size, crop_scale in ((112, 1.0), (160, 0.78)):
            dst = template(size, crop_scale)
            m = alignment_matrix(face.landmarks, size, crop_scale)
            fitted = transform_points(face.landmarks, m)
            assert np.abs(fitted[:2] - dst[:2]).max() < 0.06 * size  # least-squares residual
            crop = align(rgb, face.landmarks, size, crop_scale)
            assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
            # detect again in the crop (padded: the detector wants context around a face)
            pad = size // 2
            canvas = np.zeros((2 * size, 2 * size, 3), np.uint8)
            canvas[pad : pad + size, pad : pad + size] = crop
            found = scrfd.detect(canvas, min_face_size=0)
            assert found, (size, crop_scale)
            eyes = found[0].landmarks[:2] - pad
            assert np.linalg.norm(eyes - dst[:2], axis=1).max() < 0.05 * size
