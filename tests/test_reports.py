"""The typed reports: the committed JSON schema is the one generated from the models."""

from __future__ import annotations

import json

import jsonschema

from facecloak.contract.reports import (
    SCHEMA_FILE,
    AttackSummary,
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
