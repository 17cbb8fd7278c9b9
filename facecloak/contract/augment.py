"""Options and report of the adversarial data augmentation job (torch-free: the gateway
checks them).

The job's one item is a zip bundle: ``model.onnx`` and the labelled data set, ``data.zip``
(one folder per class) or ``data.npz`` (``x`` images, ``y`` labels). Modes:
``adversarial`` (adversarial and mediate samples for every image), ``rebalance`` (engine-made
examples that fill the under-represented classes) and ``amend`` (AdvAmd
fine-tuning of the model).
"""

from __future__ import annotations

import io
import zipfile
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BUNDLE_MODEL = "model.onnx"
BUNDLE_DATA = ("data.zip", "data.npz")
MAX_IMAGES = 20_000
"""The most images a data set may hold (the ``max_images`` option may only lower it)."""

AugmentMode = Literal["adversarial", "rebalance", "amend"]


class AugmentOptions(BaseModel):
    """What a caller may choose; attack fields are in [0, 1] image units."""

    model_config = ConfigDict(extra="forbid")

    mode: AugmentMode = Field(default="adversarial", description="What to produce.")
    eps: float = Field(default=0.1, gt=0, le=1, description="L-inf budget of the attack.")
    steps: int = Field(default=10, ge=1, le=100, description="Attack iterations.")
    step_size: float | None = Field(default=None, gt=0, le=1, description="None: 2.5*eps/steps.")
    eot_samples: int = Field(
        default=1, ge=1, le=8, description="EOT samples (random blur and rescale) when > 1."
    )
    confidence: float = Field(
        default=0.9,
        ge=0,
        lt=1,
        description="Targeted attacks (rebalance, adversarial with targets) go on until the "
        "target holds with this softmax probability (0: until it is predicted).",
    )
    targets: list[int] | None = Field(
        default=None,
        max_length=1000,
        description="adversarial: attack toward these class indices (one sample per target) "
        "instead of untargeted.",
    )
    adversarial_label: Literal["source", "target"] = Field(
        default="source",
        description="adversarial: label adversarial samples with the clean class (training "
        "for robustness) or with the class the attack reached (the relabelled set).",
    )
    phi: list[float] = Field(
        default_factory=lambda: [0.5],
        max_length=4,
        description="Mediate samples x + phi*delta (0 < phi < 1) keeping the clean label.",
    )
    share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="rebalance: raise every class to this share of the largest class.",
    )
    rebalance_from: Literal["own", "others"] = Field(
        default="own",
        description="rebalance: make each short class's examples from its own images (shifted, "
        "attacked toward the closest other class, kept as mediate samples with their label) "
        "or, as in the seed paper, from the well-represented classes toward it, labelled with "
        "it (measured worse; see docs/augment.md).",
    )
    pair_samples: int = Field(
        default=8, ge=1, le=64, description="Images per class for the pairwise A-bar attacks."
    )
    betas: list[float] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0],
        min_length=3,
        max_length=3,
        description="amend: weights of the benign, mediate and adversarial losses.",
    )
    epochs: int = Field(default=6, ge=1, le=100, description="amend: fine-tuning epochs.")
    refresh: bool = Field(
        default=False,
        description="amend: re-attack the model being trained every epoch (more robust, "
        "costs clean accuracy) instead of training on the attack stage's samples.",
    )
    lr: float = Field(default=2e-3, gt=0, le=1, description="amend: Adam learning rate.")
    batch_size: int = Field(default=64, ge=2, le=1024, description="amend: batch size.")
    holdout: float = Field(
        default=0.2, gt=0, lt=1, description="amend: share of each class held out to measure."
    )
    max_images: int = Field(default=MAX_IMAGES, ge=2, le=MAX_IMAGES)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    input_shape: list[int] | None = Field(default=None, min_length=3, max_length=3)
    value_range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    mean: list[float] | None = Field(default=None, min_length=1, max_length=4)
    std: list[float] | None = Field(default=None, min_length=1, max_length=4)
    class_names: list[str] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> AugmentOptions:
        if any(not 0.0 < p < 1.0 for p in self.phi):
            raise ValueError("every phi must lie strictly between 0 and 1")
        if any(b < 0 for b in self.betas) or sum(self.betas) <= 0:
            raise ValueError("betas must be >= 0 with a positive sum")
        if self.targets is not None and any(t < 0 for t in self.targets):
            raise ValueError("targets are class indices (>= 0)")
        return self


class ClassVulnerability(BaseModel):
    """One class: its images, how often an untargeted attack flips them, how hard the
    targeted attacks toward each other class are, and its weight A-bar."""

    index: int
    name: str
    images: int
    generated: int
    flip_rate: float
    difficulty: float
    a_bar: float


class Accuracy(BaseModel):
    """Accuracy on the held-out split: clean, and under a fresh attack on that model."""

    clean: float
    adversarial: float


class AugmentReport(BaseModel):
    """What the job produced and measured."""

    mode: AugmentMode
    images: int
    generated: int
    classes: list[ClassVulnerability]
    pair_difficulty: list[list[float]] = Field(
        default_factory=list, description="[source][target] share of the attack budget used."
    )
    attack: str
    layout: Literal["zip", "npz"]
    files: list[str] = Field(default_factory=list)
    before: Accuracy | None = None
    after: Accuracy | None = None
    held_out: int = 0
    auxiliary_bn: int = 0
    seconds: float
    notes: list[str] = Field(default_factory=list)


def make_bundle(model: bytes, data: tuple[str, bytes]) -> bytes:
    """The zip bundle of a job (what the route and the CLI submit); data by file name."""
    name = "data.npz" if data[0].lower().endswith(".npz") else "data.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(BUNDLE_MODEL, model)
        archive.writestr(name, data[1])
    return buf.getvalue()
