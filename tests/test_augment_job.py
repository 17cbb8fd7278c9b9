"""The augment job end to end on small digits: the three modes, their outputs, bad input."""
# ruff: noqa: F811 (pytest fixtures imported from tests.augment_fixtures)

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from facecloak.contract.augment import AugmentOptions, make_bundle
from models.classifier import load_classifier
from tests.augment_fixtures import FAST, NAMES, digits8, digits_onnx, subset  # noqa: F401
from workers.jobs.augment import datasets
from workers.jobs.augment.data import AugmentInputError, png
from workers.jobs.augment.job import augment, augment_bundle

Digits = tuple[Tensor, Tensor]


def _npz(out: dict[str, bytes]) -> Any:
    return np.load(io.BytesIO(out["augmented.npz"]))


def test_adversarial_mode_keeps_the_zip_layout_and_lists_what_it_made(
    digits8: Digits,
    digits_onnx: bytes,
) -> None:
    x, y = subset(digits8, 3)
    result = augment(
        digits_onnx, "data.zip", datasets.to_zip(x, y, NAMES),
        AugmentOptions(mode="adversarial", phi=[0.3, 0.7], **FAST),
    )  # fmt: skip
    files, report = result.files, result.report
    originals = [n for n in files if n.startswith("augmented/") and "/aug-" not in n]
    made = [n for n in files if "/aug-" in n]
    assert len(originals) == 30 and len(made) == 90 == report.generated
    rows = json.loads(files["manifest.json"])["generated"]
    assert sorted(r["file"] for r in rows) == sorted(made)
    assert {r["kind"] for r in rows} == {"adversarial", "mediate"}
    assert sorted({r["phi"] for r in rows}) == [0.3, 0.7, 1.0]
    for row in rows:  # labelled with the clean class and stored in its folder
        assert row["label"] == row["source_label"] == row["file"].split("/")[-2]
    assert len(report.classes) == 10 and abs(np.mean([c.a_bar for c in report.classes]) - 1) < 1e-3
    assert all(c.generated == 9 for c in report.classes)
    assert files["vulnerability.csv"].decode().startswith("index,name,images,generated")
    assert np.array(report.pair_difficulty).shape == (10, 10)


def test_adversarial_samples_stay_within_budget_and_targets_label_them(
    digits8: Digits,
    digits_onnx: bytes,
) -> None:
    x, y = subset(digits8, 2)
    options = AugmentOptions(
        targets=[4], adversarial_label="target", phi=[0.5], confidence=0.0, **FAST
    )
    result = augment(digits_onnx, "data.npz", datasets.to_npz(x, y), options)
    out = _npz(result.files)
    assert out["x"].dtype == np.uint8 and out["x"].shape[1:] == (8, 8)
    assert out["generated"].sum() == result.report.generated == 2 * 18
    rows = json.loads(result.files["manifest.json"])["generated"]
    model = load_classifier(digits_onnx)
    for row in rows:
        gen_img = out["x"][row["index"]].astype(float) / 255
        src = out["x"][int(row["source"])].astype(float) / 255
        limit = FAST["eps"] * (1.0 if row["kind"] == "adversarial" else row["phi"])
        assert np.abs(gen_img - src).max() <= limit + 1 / 255 + 1e-6
        assert row["target"] == "4" and row["source_label"] != "4"
        if row["kind"] == "mediate":
            assert out["y"][row["index"]] == int(row["source_label"])
        else:  # labelled with the class reached
            pred = model(torch.tensor(gen_img, dtype=torch.float32)[None, None]).argmax(1)
            assert out["y"][row["index"]] == int(pred) == int(row["label"])
    assert np.mean([r["reached"] for r in rows if r["kind"] == "adversarial"]) > 0.5


def test_rebalance_fills_the_small_class_with_examples_of_its_own_images(
    digits8: Digits,
    digits_onnx: bytes,
) -> None:
    x, y = subset(digits8, 6)
    keep = (y != 3) | (torch.arange(len(y)) % 3 == 0)  # class 3: 2 of 6 images
    x, y = x[keep], y[keep]
    options = AugmentOptions(mode="rebalance", share=1.0, **FAST)
    result = augment(digits_onnx, "data.npz", datasets.to_npz(x, y), options)
    out = _npz(result.files)
    made = out["y"][out["generated"]]
    assert made.tolist() == [3] * 4 and not result.report.notes
    assert np.bincount(out["y"], minlength=10).tolist() == [6] * 10
    rows = json.loads(result.files["manifest.json"])["generated"]
    assert all(r["kind"] == "rebalance" and r["source_label"] == r["label"] == "3" for r in rows)
    assert all(r["target"] not in (None, "3") and r["phi"] == 0.5 for r in rows)
    assert result.report.classes[3].generated == 4


def test_rebalance_from_others_fills_the_small_class_from_the_other_classes(
    digits8: Digits,
    digits_onnx: bytes,
) -> None:
    x, y = subset(digits8, 6)
    keep = (y != 3) | (torch.arange(len(y)) % 3 == 0)
    x, y = x[keep], y[keep]
    options = AugmentOptions(
        mode="rebalance", share=1.0, rebalance_from="others", **{**FAST, "eps": 0.3, "steps": 10}
    )
    result = augment(digits_onnx, "data.npz", datasets.to_npz(x, y), options)
    out = _npz(result.files)
    assert set(out["y"][out["generated"]].tolist()) == {3}
    rows = json.loads(result.files["manifest.json"])["generated"]
    assert rows and all(r["source_label"] != "3" and r["label"] == "3" for r in rows)


def test_amend_returns_an_onnx_model_that_resists_the_attack_better(
    digits8: Digits,
    digits_onnx: bytes,
) -> None:
    x, y = subset(digits8, 20)
    options = AugmentOptions(mode="amend", epochs=3, holdout=0.25, refresh=True, **FAST)
    progress: list[tuple[int, int]] = []
    result = augment(
        digits_onnx,
        "data.npz",
        datasets.to_npz(x, y),
        options,
        lambda d, t: progress.append((d, t)),
    )
    report = result.report
    assert report.held_out == 50 and report.auxiliary_bn == 3
    assert report.before is not None and report.after is not None
    assert report.after.adversarial > report.before.adversarial
    assert report.after.clean >= report.before.clean - 0.1
    assert progress[-1][0] == progress[-1][1] and len(progress) >= 5
    amended = load_classifier(result.files["model.onnx"])
    assert amended.class_names == NAMES and amended.spec.mean == (0.5,)
    assert report.generated == 2 * 150  # adversarial + mediate of the training split


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, blob in entries.items():
            if name.endswith("/"):
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(name, blob)
    return buf.getvalue()


def _bad_inputs(x: Tensor) -> dict[str, tuple[str, bytes, dict[str, Any]]]:
    img = png(x[0].numpy())
    ok = {"0/a.png": img, "1/b.png": img}
    big = np.zeros((1, 10, 10), np.float32)
    npz = io.BytesIO()
    np.savez(npz, x=np.zeros((3, 8, 8), np.uint8), y=np.array([0, 1, 12]))
    return {
        "empty_class": ("data.zip", _zip({**ok, "2/": b""}), {}),
        "one_class": ("data.zip", _zip({"0/a.png": img, "0/b.png": img}), {}),
        "size_mismatch": ("data.zip", _zip({**ok, "2/c.png": png(big)}), {}),
        "input_mismatch": ("data.zip", _zip({"0/a.png": png(big), "1/b.png": png(big)}), {}),
        "unknown_label": ("data.zip", _zip({**ok, "cat/c.png": img}), {}),
        "corrupt_image": ("data.zip", _zip({**ok, "2/c.png": b"\x89PNG broken"}), {}),
        "unsafe_path": ("data.zip", _zip({**ok, "../1/evil.png": img}), {}),
        "too_many_images": ("data.zip", _zip({**ok, "2/c.png": img}), {"max_images": 2}),
        "invalid_layout": ("data.zip", _zip({**ok, "loose.png": img}), {}),
        "invalid_data": ("data.zip", b"not a zip", {}),
    } | {"unknown_label ": ("data.npz", npz.getvalue(), {})}


def test_bad_data_sets_fail_with_a_code(digits8: Digits, digits_onnx: bytes) -> None:
    for code, (name, blob, extra) in _bad_inputs(digits8[0]).items():
        with pytest.raises(AugmentInputError) as info:
            augment(digits_onnx, name, blob, AugmentOptions(**{**FAST, **extra}))
        assert info.value.code == code.strip(), (code, str(info.value))


def test_the_handler_turns_bad_bundles_into_failed_outcomes(digits_onnx: bytes) -> None:
    def run(bundle: bytes) -> str:
        outcome = augment_bundle(bundle, "b.zip", AugmentOptions(), lambda d, t: None)
        assert outcome.status == "failed" and outcome.error is not None
        return outcome.error.code

    assert run(b"nope") == "invalid_bundle"
    assert run(_zip({"model.onnx": digits_onnx, "data.txt": b"x"})) == "invalid_bundle"
    assert run(make_bundle(b"not onnx", ("d.zip", _zip({})))) == "invalid_model"


def test_data_sets_past_the_decoded_size_limit_are_refused(
    digits8: Digits, digits_onnx: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.jobs.augment import data

    monkeypatch.setattr(data, "MAX_DECODED_BYTES", 500)
    x, y = subset(digits8, 1)
    for name, blob in (
        ("data.npz", datasets.to_npz(x, y)),
        ("data.zip", datasets.to_zip(x, y, NAMES)),
    ):
        with pytest.raises(AugmentInputError) as info:
            augment(digits_onnx, name, blob, AugmentOptions(**FAST))
        assert info.value.code == "too_large"
