"""Typed reports of the protect and verify jobs (torch-free; ``docs/report.schema.json``).

``ProtectReport`` is what ``OUTDIR/<file>.json`` and a job item's ``report`` hold;
``Verification`` is the table ``facecloak verify`` and ``POST /v1/verify`` return.
``python -m facecloak.contract.reports [PATH]`` writes the JSON schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ReportStatus = Literal["protected", "no_face", "failed"]
ModelRole = Literal["surrogate", "evaluation"]
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "report.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConditionCheck(_Strict):
    """One face, one model, one condition: is the protected face still matched?"""

    clean_similarity: float | None = Field(description="Original face after the condition.")
    protected_similarity: float | None = Field(description="None: the face was not re-detected.")
    threshold: float
    detected: bool
    matched: bool


class FaceVerification(_Strict):
    """Quality and checks of one face of the original photo."""

    box: list[float] = Field(min_length=4, max_length=4)
    psnr: float | None = Field(description="dB; None when identical.")
    ssim: float
    models: dict[str, dict[str, ConditionCheck]] = Field(description="model -> condition -> check.")


class Calibration(BaseModel):
    """A model's calibrated threshold (``models/thresholds.json`` entry)."""

    model_config = ConfigDict(extra="allow")

    threshold: float
    tar: float | None = None
    far_measured: float | None = None


class Verification(_Strict):
    """The verification table of an original and a protected photo."""

    faces: list[FaceVerification]
    matched_faces: dict[str, dict[str, int]] = Field(
        description="model -> condition -> number of faces still matched."
    )
    psnr: float | None = Field(description="Whole photo, dB; None when identical.")
    ssim: float
    conditions: list[str]
    thresholds: dict[str, Calibration | None]
    seconds: float

    def still_matched(self, models: list[str], condition: str = "saved") -> dict[str, int]:
        """Faces still matched under ``condition``, for each of ``models``."""
        return {m: self.matched_faces[m][condition] for m in models}


class ReportError(_Strict):
    """Why a photo was not protected."""

    code: str
    message: str


class EotEntry(_Strict):
    """One expectation-over-transformation transform of the attack."""

    transform: str
    probability: float = Field(ge=0, le=1)
    params: dict[str, float | list[float]] = Field(default_factory=dict)


class AttackSummary(_Strict):
    """The attack as run, generated from the job's attack spec."""

    method: str = Field(description="E.g. 'DI-MI-FGSM + EOT(jpeg, rescale, makeup)'.")
    budget: str = Field(default="linf")
    eps_255: float = Field(gt=0)
    alpha_255: float
    max_steps: int = Field(ge=1)
    optimizer: str = "momentum_sign"
    diversity: bool = False
    translation_invariance: bool = False
    eot_samples: int = Field(default=1, ge=1)
    eot: list[EotEntry] = Field(default_factory=list)
    margin: float = 0.0
    quantise_8bit: bool = False
    seed: int
    surrogates: list[str] = Field(min_length=1)


class FaceAttack(_Strict):
    """How the attack went for one face."""

    steps: int = Field(ge=0)
    converged: bool
    region: list[int] = Field(min_length=4, max_length=4, description="x0, y0, x1, y1.")


class ModelUse(_Strict):
    """A model named in the report, its role and its licence."""

    role: ModelRole
    licence: str


class Seconds(_Strict):
    """Wall-clock seconds."""

    attack: float | None = None
    total: float | None = None


class ProtectReport(_Strict):
    """The report of one photo of a protect job (``OUTDIR/<file>.json``)."""

    model_config = ConfigDict(extra="forbid", title="FaceCloak protection report")

    file: str
    status: ReportStatus
    error: ReportError | None = None
    format: str | None = None
    size: list[int] | None = Field(default=None, min_length=2, max_length=2)
    min_face_size: int | None = None
    faces_too_small: int | None = Field(default=None, ge=0)
    objective: Literal["dodging", "dodging+decoy"] | None = None
    decoys: list[str] | None = None
    attack: AttackSummary | None = None
    faces: list[FaceAttack] | None = None
    models: dict[str, ModelUse] | None = None
    metadata_stripped: Literal[True] | None = None
    seconds: Seconds | None = None
    verification: Verification | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; top-level fields that are unset (None) are left out."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if v is not None}


def report_schema() -> dict[str, Any]:
    """The JSON schema of ``ProtectReport`` (what ``docs/report.schema.json`` holds)."""
    schema = ProtectReport.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """``report_schema()`` as the committed file's text."""
    return json.dumps(report_schema(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the schema to ``argv[0]`` (default ``docs/report.schema.json``)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else SCHEMA_FILE
    path.write_text(schema_text())


if __name__ == "__main__":
    main()
