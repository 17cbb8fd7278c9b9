"""The typed reports: the committed JSON schema is the one generated from the models."""

from __future__ import annotations

import json

import jsonschema

from facecloak.contract.reports import (
    SCHEMA_FILE,
    AttackSummary,
    FaceVisibility,
    ProtectReport,
    ReportError,
    Verification,
    report_schema,
    schema_text,
)


def test_committed_schema_is_generated_from_the_model() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "docs/report.schema.json is stale: run `python -m facecloak.contract.reports`"
    )


def test_refusal_report_leaves_unset_fields_out_and_validates() -> None:
    report = ProtectReport(
        file="x.jpg", status="no_face", error=ReportError(code="no_face", message="none")
    )
    data = report.to_dict()
    assert data == {
        "file": "x.jpg",
        "status": "no_face",
        "error": {"code": "no_face", "message": "none"},
    }
    jsonschema.validate(data, report_schema())
    assert ProtectReport.model_validate(data) == report


def test_schema_rejects_what_the_model_rejects() -> None:
    bad = {
        "file": "x",
        "status": "protected",
        "attack": {
            "method": "m",
            "eps_255": 0,
            "alpha_255": 1,
            "max_steps": 1,
            "seed": 0,
            "surrogates": ["a"],
        },
    }
    try:
        jsonschema.validate(bad, report_schema())
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("eps_255 = 0 must be refused")
    summary = AttackSummary(
        method="m", eps_255=1, alpha_255=1, max_steps=1, seed=0, surrogates=["a"]
    )
    assert json.loads(summary.model_dump_json())["eot"] == []


def test_verification_counts_matches() -> None:
    table = Verification(
        faces=[],
        matched_faces={"a": {"saved": 1}, "b": {"saved": 0}},
        psnr=None,
        ssim=1.0,
        conditions=["saved"],
        thresholds={},
        seconds=0.1,
    )
    assert table.still_matched(["a", "b"]) == {"a": 1, "b": 0}


def _visibility(quality: int, below_min: bool = False) -> FaceVisibility:
    return FaceVisibility(
        box=[0, 0, 10, 10],
        flip=0.05,
        ssim=0.95,
        psnr=38.0,
        jpeg_equivalent=quality,
        below_min=below_min,
    )


def test_visibility_cap_defaults_to_none_and_within() -> None:
    vis = _visibility(60)
    assert (vis.preset, vis.visibility_cap, vis.within_cap) == (None, None, True)


def test_visibility_within_cap_compares_jpeg_equivalents() -> None:
    assert _visibility(80).with_cap("balanced", 75).within_cap
    assert _visibility(75).with_cap("balanced", 75).within_cap
    over = _visibility(70).with_cap("balanced", 75)
    assert not over.within_cap and over.preset == "balanced" and over.visibility_cap == 75
    assert not _visibility(50, below_min=True).with_cap("strong", 50).within_cap
    assert _visibility(50, below_min=True).with_cap("strong", None).within_cap


def test_schema_requires_visibility_on_every_verified_face() -> None:
    face = report_schema()["$defs"]["FaceVerification"]
    assert "visibility" in face["required"]
    vis = report_schema()["$defs"]["FaceVisibility"]
    assert set(vis["required"]) >= {"box", "flip", "ssim", "psnr", "jpeg_equivalent", "below_min"}
    assert "next_preset" in report_schema()["properties"]
    row = {
        "box": [0, 0, 10, 10],
        "psnr": 38.0,
        "ssim": 0.95,
        "visibility": _visibility(60).with_cap("subtle", 90).model_dump(mode="json"),
        "models": {},
    }
    table: dict[str, object] = {
        "faces": [row],
        "matched_faces": {},
        "psnr": None,
        "ssim": 1.0,
        "conditions": ["saved"],
        "thresholds": {},
        "seconds": 0.1,
    }
    report = {"file": "x", "status": "protected", "verification": table, "next_preset": "subtle"}
    jsonschema.validate(report, report_schema())
    assert ProtectReport.model_validate(report).verification.faces[0].visibility.within_cap is False  # type: ignore[union-attr]
    del row["visibility"]
    try:
        jsonschema.validate(report, report_schema())
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a verified face without visibility must be refused")
