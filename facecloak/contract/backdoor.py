"""Options and report of the backdoor scan job (torch-free: the gateway checks them).

The job's one item is a zip bundle: ``model.onnx``, optionally ``reference.onnx`` (a clean
model of the same task) and ``samples.npz`` / ``samples.zip`` (unlabelled images).
"""

from __future__ import annotations

import io
import zipfile

from pydantic import BaseModel, ConfigDict, Field

BUNDLE_MODEL, BUNDLE_REFERENCE = "model.onnx", "reference.onnx"
BUNDLE_SAMPLES = ("samples.npz", "samples.zip")


class BackdoorScanOptions(BaseModel):
    """What a caller may choose for a scan; input spec fields override the model's metadata."""

    model_config = ConfigDict(extra="forbid")

    eps: float = Field(default=0.3, gt=0, le=1, description="I-FGSM L-inf budget in [0, 1] units.")
    iterations: int = Field(default=20, ge=1, le=200, description="I-FGSM iterations.")
    blanks: int = Field(default=4, ge=0, le=64, description="Blank (grey) seed images.")
    noise: int = Field(default=8, ge=0, le=256, description="White-noise seed images.")
    data_seeds: int = Field(default=32, ge=0, le=512, description="Sample images used at most.")
    cleanse: bool = Field(
        default=True, description="Also reverse-engineer triggers (Neural Cleanse)."
    )
    cleanse_steps: int = Field(default=80, ge=1, le=1000)
    threshold: float = Field(default=3.5, gt=0, le=100, description="Anomaly index to flag.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    input_shape: list[int] | None = Field(default=None, min_length=3, max_length=3)
    value_range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    mean: list[float] | None = Field(default=None, min_length=1, max_length=4)
    std: list[float] | None = Field(default=None, min_length=1, max_length=4)
    class_names: list[str] | None = Field(default=None, max_length=1000)


class Localisation(BaseModel):
    """Where the suspected trigger lies: bounding box ``[top, left, bottom, right]`` (pixels,
    bottom/right exclusive), centroid ``[row, col]`` and the share of the image it covers.
    """

    source: str
    box: list[int]
    centroid: list[float]
    area: float


class ClassScore(BaseModel):
    """One class: its anomaly index and the signals behind it."""

    index: int
    name: str
    score: float
    steps: float
    steps_reference: float | None = None
    bias_distance: float | None = None
    trigger_norm: float | None = None
    trigger_norm_reference: float | None = None
    stamp_success: float | None = None
    """Share of the inputs the class's trigger, cut to a small hard stamp, sends to it."""


class BackdoorReport(BaseModel):
    """The scan's verdict, per-class scores and the localisation of the trigger."""

    suspicious: bool
    target_class: int | None
    source_class: int | None
    threshold: float
    scores: list[float]
    classes: list[ClassScore]
    source_scores: list[float] = Field(default_factory=list)
    localisation: list[Localisation] = Field(default_factory=list)
    with_reference: bool
    input_shape: list[int]
    attack: str
    seconds: float
    figures: list[str] = Field(default_factory=list)


def make_bundle(
    model: bytes, reference: bytes | None = None, samples: tuple[str, bytes] | None = None
) -> bytes:
    """The zip bundle of a scan (what the route and the CLI submit); samples by file name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(BUNDLE_MODEL, model)
        if reference is not None:
            archive.writestr(BUNDLE_REFERENCE, reference)
        if samples is not None:
            name = "samples.npz" if samples[0].lower().endswith(".npz") else "samples.zip"
            archive.writestr(name, samples[1])
    return buf.getvalue()
