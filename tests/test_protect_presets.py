"""Visibility presets: options, the cap verdict, progress and cancellation of the search."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from facecloak.contract.options import NEXT_PRESET, VISIBILITY_CAPS, ProtectOptions
from facecloak.contract.reports import FaceVisibility, ProtectReport
from workers.jobs.protect.config import SEARCH_PLANS, cloak_config
from workers.jobs.protect.job import _cap_verdict
from workers.jobs.protect.search import StepMeter


def test_strong_is_the_default_and_the_caps_are_jpeg_qualities() -> None:
    options = ProtectOptions()
    assert options.strength == "strong" and options.visibility_cap is None
    assert ProtectOptions(strength="balanced").visibility_cap == 75
    assert ProtectOptions(strength="subtle").visibility_cap == 90
    assert ProtectOptions(strength="strong").visibility_cap is None
    assert set(VISIBILITY_CAPS) | {"low", "medium", "high"} == set(NEXT_PRESET)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValidationError):
        ProtectOptions(strength="extreme")  # type: ignore[arg-type]


def test_legacy_presets_keep_their_linf_attack() -> None:
    config = cloak_config(ProtectOptions(strength="medium"))
    assert config.search is None and config.spec.budget == "linf"
    assert config.spec.eps == pytest.approx(12 / 255) and config.spec.steps == 60
    assert ProtectOptions(strength="medium", eps=10).budget()[0] == pytest.approx(10 / 255)


def test_visibility_presets_search_a_perceptual_budget_with_overrides() -> None:
    config = cloak_config(ProtectOptions(strength="balanced", eps=16, steps=40))
    assert config.search is not None and config.spec.budget == "perceptual"
    assert config.spec.optimizer == "rms"
    assert config.search.levels[-1][0] == pytest.approx(16.0)
    assert abs(config.search.steps - 40) <= len(config.search.levels)
    eps = [e for e, _ in config.search.levels]
    assert eps == sorted(eps) and config.level_spec(0).eps < config.level_spec(2).eps
    assert {s.transform for s in config.spec.eot} >= {"median", "blur", "quantise"}
    assert SEARCH_PLANS["subtle"].cap == 90 and SEARCH_PLANS["strong"].cap is None
    plan = config.search
    assert config.level_spec(1).flip_weight == plan.flip_weight > 0
    assert config.level_spec(1).ssim_weight == plan.ssim_weight > 0
    shrink = config.level_spec(1, shrink=True)
    assert shrink.ssim_weight == plan.refine_ssim_weight and shrink.shrink == plan.shrink


def _vis(q: int, below_min: bool = False) -> FaceVisibility:
    measured = FaceVisibility(
        box=[0, 0, 10, 10], flip=0.05, ssim=0.97, psnr=40.0, jpeg_equivalent=q, below_min=below_min
    )
    return measured.with_cap("balanced", 75)


def test_over_the_cap_fails_with_the_next_preset() -> None:
    assert _vis(80).within_cap and not _vis(60).within_cap and not _vis(50, True).within_cap
    report = ProtectReport(file="x.jpg", status="protected")
    options = ProtectOptions(strength="balanced")
    assert _cap_verdict(report, options, []).status == "protected"
    failed = _cap_verdict(report, options, [2])
    assert failed.status == "failed" and failed.next_preset == "strong"
    assert failed.error is not None and failed.error.code == "visibility_cap_exceeded"
    assert "[2]" in failed.error.message


def test_step_meter_counts_early_stopped_faces_as_done() -> None:
    seen: list[tuple[int, int]] = []
    meter = StepMeter(2, 10, lambda d, t: seen.append((d, t)))
    meter.advance([0, 1])
    meter.finish([0])
    meter.advance([1])
    assert seen[-1] == (12, 20)
    meter.finish([0, 1])
    meter.report()
    assert seen[-1] == (20, 20)
