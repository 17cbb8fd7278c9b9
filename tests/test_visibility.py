"""Visibility metrics on a real face photo: FLIP, SSIM, PSNR and the JPEG-quality equivalent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tests.helpers import dev_photo
from workers.jobs.visibility import (
    JpegEquivalent,
    face_visibility,
    flip,
    jpeg_equivalent,
    jpeg_resave,
    widened_box,
)

# A face-sized view of a dev photo, small enough for tens of milliseconds per FLIP.
BOX = (60.0, 50.0, 180.0, 200.0)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = Image.open(dev_photo("img26.jpg")).convert("RGB")
    img.thumbnail((240, 260))
    return np.asarray(img).copy()


def noisy(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).round().astype(np.uint8)


def test_identical_photo_is_invisible(photo: np.ndarray) -> None:
    vis = face_visibility(photo, photo.copy(), BOX)
    assert vis.flip == 0.0
    assert vis.ssim == pytest.approx(1.0)
    assert math.isinf(vis.psnr)
    assert vis.jpeg_equivalent == JpegEquivalent(100, below_min=False)


def test_jpeg_q60_resave_is_equivalent_to_q60(photo: np.ndarray) -> None:
    vis = face_visibility(photo, jpeg_resave(photo, 60), BOX)
    assert not vis.jpeg_equivalent.below_min
    assert abs(vis.jpeg_equivalent.quality - 60) <= 5
    assert 0.0 < vis.flip < 0.2
    assert vis.ssim < 1.0


def test_strong_noise_is_worse_than_q50(photo: np.ndarray) -> None:
    vis = face_visibility(photo, noisy(photo, 20.0), BOX)
    assert vis.jpeg_equivalent.below_min
    assert str(vis.jpeg_equivalent) == "<q50"
    assert vis.psnr < 25.0


def test_more_noise_is_more_visible(photo: np.ndarray) -> None:
    light = face_visibility(photo, noisy(photo, 1.0), BOX)
    heavy = face_visibility(photo, noisy(photo, 4.0), BOX)
    assert heavy.flip > light.flip
    assert heavy.ssim < light.ssim
    assert heavy.jpeg_equivalent.quality < light.jpeg_equivalent.quality


def test_equivalent_matches_flip_of_that_quality(photo: np.ndarray) -> None:
    crop = photo[50:200, 60:180]
    for q in (55, 80, 95):
        target = flip(crop, jpeg_resave(crop, q))
        assert abs(jpeg_equivalent(crop, target).quality - q) <= 2


def test_grayscale_photos_work(photo: np.ndarray) -> None:
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    vis2d = face_visibility(grey, noisy(grey, 3.0), BOX)
    grey3 = np.repeat(grey[:, :, None], 3, axis=2)
    vis3d = face_visibility(grey3, np.repeat(noisy(grey, 3.0)[:, :, None], 3, axis=2), BOX)
    assert 0.0 < vis2d.flip < 1.0
    assert vis2d.flip == pytest.approx(vis3d.flip)
    assert vis2d.ssim == pytest.approx(vis3d.ssim)


def test_box_is_widened_by_30_percent_and_clipped() -> None:
    assert widened_box((100.0, 100.0, 200.0, 300.0), (1000, 1000, 3)) == (85, 70, 215, 330)
    assert widened_box((0.0, 5.0, 100.0, 100.0), (90, 80, 3)) == (0, 0, 80, 90)
    with pytest.raises(ValueError):
        widened_box((500.0, 500.0, 600.0, 600.0), (100, 100, 3))


def test_mismatched_photos_are_rejected(photo: np.ndarray) -> None:
    with pytest.raises(ValueError):
        face_visibility(photo, photo[:-1], BOX)
    with pytest.raises(ValueError):
        face_visibility(photo.astype(np.float32), photo.astype(np.float32), BOX)


def test_verification_reports_each_face_visibility(settings: object, model_store: object) -> None:
    from tests.helpers import runtime_for
    from workers.jobs.verify import format_table, verify_arrays

    runtime = runtime_for(settings, model_store)  # type: ignore[arg-type]
    original = np.asarray(Image.open(dev_photo("img27.jpg")).convert("RGB")).copy()
    resaved = jpeg_resave(original, 60)
    table = verify_arrays(
        runtime, original, resaved, ["sface"], 40, ("saved",), preset="balanced", visibility_cap=75
    )
    assert table.faces
    for face in table.faces:
        vis = face.visibility
        assert abs(vis.jpeg_equivalent - 60) <= 6 and not vis.below_min
        assert vis.flip > 0 and (face.psnr, face.ssim) == (vis.psnr, vis.ssim)
        assert widened_box(tuple(face.box), original.shape) == tuple(vis.box)  # type: ignore[arg-type]
        assert (vis.preset, vis.visibility_cap, vis.within_cap) == ("balanced", 75, False)
    assert "as visible as a JPEG q" in format_table(table)
    same = verify_arrays(runtime, original, original.copy(), ["sface"], 40, ("saved",))
    assert all(f.visibility.flip == 0 and f.visibility.within_cap for f in same.faces)
