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


class FaceVisibility(_Strict):
    """How visible the protection of one face is, measured on the saved photo.

    Every number is taken on ``box``: the face box widened by 30%, clipped to the photo.
    """

    box: list[int] = Field(
        min_length=4, max_length=4, description="x0, y0, x1, y1 (exclusive): the measured crop."
    )
    flip: float = Field(ge=0, description="Mean LDR FLIP at 67 pixels/degree; 0 when identical.")
    ssim: float = Field(description="SSIM on BT.601 luma.")
    psnr: float | None = Field(description="dB over RGB; None when identical.")
    jpeg_equivalent: int = Field(
        ge=1,
        le=100,
        description="The JPEG quality whose re-save of the original face is as visible (FLIP).",
    )
    below_min: bool = Field(
        description="More visible than a re-save at the lowest quality searched (q50)."
    )
    preset: str | None = Field(default=None, description="The preset that protected the face.")
    visibility_cap: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="The preset's cap: the protection may be at most as visible as a JPEG "
        "re-save at this quality; None: no cap.",
    )
    within_cap: bool = Field(
        default=True, description="jpeg_equivalent reaches the cap (true when there is none)."
    )

    def with_cap(self, preset: str | None, cap: int | None) -> FaceVisibility:
        """A copy that records ``preset`` and ``cap`` and whether the face stays within it."""
        within = cap is None or (not self.below_min and self.jpeg_equivalent >= cap)
        return self.model_copy(
            update={"preset": preset, "visibility_cap": cap, "within_cap": within}
        )


class FaceVerification(_Strict):
    """Quality and checks of one face of the original photo."""

    box: list[float] = Field(min_length=4, max_length=4)
    psnr: float | None = Field(description="dB on the visibility crop; None when identical.")
    ssim: float = Field(description="SSIM on the visibility crop.")
    visibility: FaceVisibility
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


class SearchSummary(_Strict):
    """The least-visible-cloak search of a visibility preset, as run."""

    levels_255: list[float] = Field(description="Luma budgets tried, smallest first.")
    steps_per_level: list[int]
    eps_chroma_255: float
    mask_gain: list[float] = Field(min_length=2, max_length=2)
    refine_steps: int = Field(ge=0, description="Iterations of the shrink phase.")
    shrink: float = Field(description="Factor applied while the margin holds.")
    visibility_cap: int | None = Field(description="JPEG quality cap; null: no cap.")


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
    search: SearchSummary | None = Field(
        default=None, description="Visibility presets: the budget search (null: one attack)."
    )


class FaceAttack(_Strict):
    """How the attack went for one face."""

    steps: int = Field(ge=0)
    converged: bool
    region: list[int] = Field(min_length=4, max_length=4, description="x0, y0, x1, y1.")
    luma_eps_255: float | None = Field(
        default=None, description="Visibility presets: the luma budget level the face ended at."
    )


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
    next_preset: str | None = Field(
        default=None,
        description="A preset to try next (stronger when faces are still matched, subtler "
        "when a face is over its visibility cap); None: keep this one.",
    )

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
