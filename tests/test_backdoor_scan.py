"""The backdoor scan job on small digit models: verdict, target, localisation, bad input."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from facecloak.contract.backdoor import BackdoorScanOptions, make_bundle
from models.classifier import load_classifier
from tests.backdoor_fixtures import (  # noqa: F401 (fixtures)
    SIZE,
    clean_onnx,
    patch_onnx,
    reference_onnx,
    sample_images,
    tiny_graph,
    zoo_dir,
)
from workers.jobs.backdoor.cleanse import CleanseSettings, reverse_engineer
from workers.jobs.backdoor.job import scan, scan_bundle
from workers.jobs.backdoor.scores import stamp_failure

FAST = BackdoorScanOptions(iterations=10, cleanse_steps=100, data_seeds=24)


def _npz(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, images=array)
    return buf.getvalue()


def test_a_patch_backdoor_is_found_with_its_target_and_place(
    patch_onnx: bytes,  # noqa: F811
    reference_onnx: bytes,  # noqa: F811
) -> None:
    bundle = make_bundle(patch_onnx, reference_onnx, ("s.npz", _npz(sample_images())))
    outcome = scan_bundle(bundle, "scan.zip", FAST, lambda done, total: None)
    assert outcome.status == "protected", outcome.error
    report = outcome.report
    assert report["suspicious"] and report["target_class"] == 3, report["scores"]
    assert report["with_reference"] and len(report["scores"]) == 10
    mask = next(loc for loc in report["localisation"] if loc["source"].endswith("mask"))
    assert mask["centroid"][1] > SIZE / 2, mask  # the trigger sits on the right (coarse, fast)
    assert 0 < mask["area"] < 0.25, mask
    assert outcome.output is not None
    with zipfile.ZipFile(io.BytesIO(outcome.output)) as archive:
        assert json.loads(archive.read("report.json"))["target_class"] == 3
        assert archive.read("scores.png")[:4] == b"\x89PNG"
        assert set(report["figures"]) <= set(archive.namelist())


def test_the_clean_model_scores_below_the_backdoored_one(
    patch_onnx: bytes,  # noqa: F811
    clean_onnx: bytes,  # noqa: F811
) -> None:
    data = torch.from_numpy(sample_images())
    bad = scan(load_classifier(patch_onnx), None, data, FAST).report
    good = scan(load_classifier(clean_onnx), None, data, FAST).report
    assert max(good.scores) < max(bad.scores)
    assert not good.suspicious and good.target_class is None and good.source_class is None


def test_a_planted_patch_survives_the_compact_stamp_and_natural_triggers_do_not(
    patch_onnx: bytes,  # noqa: F811
    clean_onnx: bytes,  # noqa: F811
) -> None:
    data = torch.from_numpy(sample_images())
    settings = CleanseSettings(steps=FAST.cleanse_steps)
    bad = reverse_engineer(load_classifier(patch_onnx), data, 10, settings)
    good = reverse_engineer(load_classifier(clean_onnx), data, 10, settings)
    assert int(bad.stamp_success.argmax()) == 3 and float(bad.stamp_success[3]) >= 0.8
    assert float(good.stamp_success.max()) <= 0.3, good.stamp_success
    assert bad.stamp_trials[3] == int((load_classifier(patch_onnx)(data).argmax(1) != 3).sum())
    failure = stamp_failure(bad.stamp_success, bad.stamp_trials)
    floor = 1 / float(bad.stamp_trials[3])
    assert float(failure[3]) == pytest.approx(max(1 - float(bad.stamp_success[3]), floor))


@pytest.mark.parametrize(
    ("reference", "samples", "code"),
    [
        (tiny_graph(), None, "reference_mismatch"),
        (None, ("s.npz", _npz(np.zeros((4, 1, 8, 8), np.float32))), "samples_mismatch"),
        (None, ("s.npz", b"PK\x03\x04 broken"), "invalid_samples"),
        (None, ("s.npz", _npz(np.full((4, 1, SIZE, SIZE), 3.0, np.float32))), "invalid_samples"),
    ],
)
def test_bad_scan_inputs_fail_with_a_code(
    clean_onnx: bytes,  # noqa: F811
    reference: bytes | None,
    samples: tuple[str, bytes] | None,
    code: str,
) -> None:
    bundle = make_bundle(clean_onnx, reference, samples)
    outcome = scan_bundle(bundle, "scan.zip", FAST, lambda done, total: None)
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error.code == code, outcome.error


def test_a_bundle_that_is_not_a_zip_fails() -> None:
    outcome = scan_bundle(b"\x08\x01 onnx?", "scan.zip", FAST, lambda done, total: None)
    assert outcome.error is not None and outcome.error.code == "invalid_bundle"
