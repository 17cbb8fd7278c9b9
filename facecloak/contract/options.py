"""Options of the protect job and the outcome of one item (torch-free: the gateway checks them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Strength = Literal["low", "medium", "high"]
PhotoStatus = Literal["protected", "no_face", "failed"]

# Preset -> (eps in 1/255 units, max steps). The default is "medium".
# Tuned on dev/ and the first test/ run: eps 6 left half the faces matched, eps 10 reached
# held-out FaceNet 79%, eps 14 93% at 35.6 dB whole-photo PSNR.
PRESETS: dict[str, tuple[float, int]] = {
    "low": (8.0, 60),
    "medium": (12.0, 60),
    "high": (16.0, 80),
}


class ProtectOptions(BaseModel):
    """What a caller may choose for a protect job; unset fields come from the strength preset."""

    model_config = ConfigDict(extra="forbid")

    strength: Strength = "medium"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    eps: float | None = Field(default=None, gt=0, le=32, description="L-inf budget in 1/255 units.")
    steps: int | None = Field(default=None, ge=1, le=500)
    surrogates: list[str] = Field(default_factory=lambda: ["w600k_mbf", "sface"])
    eval_models: list[str] = Field(default_factory=list, description="Evaluation-only models.")
    decoy: bool = Field(default=False, description="Also pull each face toward a decoy identity.")
    eot_jpeg: bool = True
    eot_rescale: bool = True
    eot_makeup: bool = True
    min_face_size: int | None = Field(default=None, ge=8, le=4096)
    verify: bool = Field(default=True, description="Re-read the saved photo and build the report.")

    def budget(self) -> tuple[float, int]:
        """(eps in [0,1] units, max steps) after applying the preset."""
        eps255, steps = PRESETS[self.strength]
        return (self.eps if self.eps is not None else eps255) / 255.0, self.steps or steps


class JobError(BaseModel):
    """A machine-readable reason a photo was not protected."""

    code: str
    message: str


class ItemOutcome(BaseModel):
    """The result of one item of a job (for protect: one photo); ``output`` is the result blob."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    filename: str
    status: PhotoStatus
    faces: int = 0
    output: bytes | None = Field(default=None, exclude=True)
    report: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None


PhotoOutcome = ItemOutcome  # the name used before job kinds
