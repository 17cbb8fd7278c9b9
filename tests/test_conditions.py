"""Verification conditions: the attacker's clean-ups are real uint8 filters."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, median_filter

from facecloak.settings import Settings
from models.registry import ModelStore
from tests.helpers import runtime_for
from workers.jobs import conditions
from workers.jobs.runtime import Runtime


@pytest.fixture(scope="module")
def runtime(settings: Settings, model_store: ModelStore) -> Runtime:
    return runtime_for(settings, model_store)


def photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.uniform(0, 255, (48, 64, 3)), sigma=(4, 4, 0))
    return np.clip(smooth, 0, 255).astype(np.uint8)


def test_every_cleanup_is_a_verification_condition() -> None:
    assert set(conditions.CLEANUPS) == {"median3", "blur1", "bits5"}
    assert set(conditions.CONDITIONS) >= {"saved", "jpeg75", "makeup", *conditions.CLEANUPS}
    assert all(conditions.scale_of(c) == 1.0 for c in conditions.CLEANUPS)


@pytest.mark.parametrize("name", ["median3", "blur1", "bits5"])
def test_cleanups_keep_size_and_type_and_change_the_photo(runtime: Runtime, name: str) -> None:
    rgb = photo()
    rgb[10, 10] = 255  # an impulse every clean-up changes
    out = conditions.apply(runtime, rgb, name)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.array_equal(out, rgb)
    assert np.array_equal(conditions.apply(runtime, rgb, name), out)  # deterministic


def test_median3_removes_an_impulse_a_blur_only_spreads() -> None:
    flat = np.full((9, 9, 3), 100, dtype=np.uint8)
    flat[4, 4] = 255
    assert np.all(conditions.median3(flat) == 100)
    blurred = conditions.blur1(flat)
    assert blurred[4, 4, 0] > 100 and blurred[4, 5, 0] > 100 and blurred[0, 0, 0] == 100


@pytest.mark.parametrize("shape", [(57, 43, 3), (2, 5, 3), (1, 1, 3), (31, 29, 1)])
def test_median3_is_the_3x3_median_of_each_channel(shape: tuple[int, int, int]) -> None:
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    rgb[: shape[0] // 2] //= 16  # flat stretches too: ties
    ref = median_filter(rgb, size=(3, 3, 1), mode="mirror")
    assert np.array_equal(conditions.median3(rgb), ref)


def test_blur1_is_a_sigma_1_gaussian_per_channel() -> None:
    rgb = photo(1)
    ref = gaussian_filter(rgb[..., 1].astype(np.float64), sigma=1.0, mode="mirror")
    out = conditions.blur1(rgb)
    assert np.abs(out[..., 1].astype(np.float64) - ref).max() <= 0.5 + 1e-6
    assert abs(out.mean() - rgb.mean()) < 0.5


def test_bits5_keeps_32_levels_spread_over_the_range() -> None:
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    out = conditions.bit_depth(ramp, 5)
    levels = np.unique(out)
    assert len(levels) == 32 and levels[0] == 0 and levels[-1] == 255
    assert np.abs(out.astype(int) - ramp.astype(int)).max() <= 5  # half a 5-bit step


def test_unknown_condition_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="unknown condition"):
        conditions.apply(runtime, photo(), "median5")
