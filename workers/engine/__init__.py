"""The attack engine: pure PyTorch, tensors in and tensors out, randomness from a Generator.

* transforms (one protocol, per-sample context): JPEG, rescale, input diversity, blur,
  median, 8-bit quantisation, grayscale, binarisation; ``RandomApply``, ``Compose``, ``EOT``;
* objectives: cosine dodging / impersonation, cross-entropy, CTC, penalties, combined by
  ``ModelObjective``, ``Ensemble``, ``Sum``, ``Expectation``;
* budgets (L-inf, L2, perceptual luma/chroma, SSIM floor, universal trigger, per-group triggers) and
  optimisers (sign, momentum, RMS-normalised momentum, Adam);
* one loop, ``IterativeAttack``, built from an ``AttackSpec`` (presets: FGSM ... TI-DI-MI-FGSM),
  with an ``on_step`` callback and a change penalty (FLIP, ``1 - SSIM``, ``PenaltySum``), and
  ``ScaleSearch`` to shrink a result while it still holds.
"""

from workers.engine.attack import AttackResult, IterativeAttack, OnStep, StepEvent
from workers.engine.budget import Budget, L2Budget, LinfBudget, SharedBudget, TriggerBudget
from workers.engine.diversity import InputDiversity
from workers.engine.filters import GaussianBlur, MedianSmooth, Quantise8bit
from workers.engine.flip import FlipLoss
from workers.engine.jpeg import DifferentiableJpeg
from workers.engine.objectives import (
    CTC,
    INPUT,
    CosineDodging,
    CosineImpersonation,
    CrossEntropy,
    Ensemble,
    Expectation,
    L1Penalty,
    L2Penalty,
    ModelObjective,
    Objective,
    ObjectiveValue,
    OutputLoss,
    Sum,
    TotalVariationPenalty,
    cosine_similarity,
    dodging_loss,
    impersonation_loss,
)
from workers.engine.penalties import PenaltySum
from workers.engine.perceptual import PerceptualBudget
from workers.engine.rescale import RandomRescale
from workers.engine.shrink import ScaleResult, ScaleSearch
from workers.engine.smoothing import GradientSmoothing
from workers.engine.spec import (
    PRESETS,
    TRANSFORMS,
    AttackSpec,
    EotStep,
    build_attack,
    difgsm,
    dimifgsm,
    fgsm,
    ifgsm,
    make_diversity,
    make_eot,
    make_penalty,
    mifgsm,
    ti_dimifgsm,
)
from workers.engine.ssim import SsimFloor, SsimLoss, ssim, ssim_map
from workers.engine.threshold import Binarise, Grayscale, luma
from workers.engine.transforms import (
    EOT,
    Compose,
    Identity,
    RandomApply,
    Transform,
    TransformContext,
)
from workers.engine.trigger import GroupTriggerBudget, Persistent
from workers.engine.update import AdamUpdate, MomentumUpdate, RmsUpdate, SignUpdate, UpdateRule

__all__ = [
    "CTC",
    "EOT",
    "INPUT",
    "PRESETS",
    "TRANSFORMS",
    "AdamUpdate",
    "AttackResult",
    "AttackSpec",
    "Binarise",
    "Budget",
    "Compose",
    "CosineDodging",
    "CosineImpersonation",
    "CrossEntropy",
    "DifferentiableJpeg",
    "Ensemble",
    "EotStep",
    "Expectation",
    "FlipLoss",
    "GaussianBlur",
    "GradientSmoothing",
    "Grayscale",
    "GroupTriggerBudget",
    "Identity",
    "InputDiversity",
    "IterativeAttack",
    "L1Penalty",
    "L2Budget",
    "L2Penalty",
    "LinfBudget",
    "MedianSmooth",
    "ModelObjective",
    "MomentumUpdate",
    "Objective",
    "ObjectiveValue",
    "OnStep",
    "OutputLoss",
    "PenaltySum",
    "PerceptualBudget",
    "Persistent",
    "Quantise8bit",
    "RandomApply",
    "RandomRescale",
    "RmsUpdate",
    "ScaleResult",
    "ScaleSearch",
    "SharedBudget",
    "SignUpdate",
    "SsimFloor",
    "SsimLoss",
    "StepEvent",
    "Sum",
    "TotalVariationPenalty",
    "Transform",
    "TransformContext",
    "TriggerBudget",
    "UpdateRule",
    "build_attack",
    "cosine_similarity",
    "difgsm",
    "dimifgsm",
    "dodging_loss",
    "fgsm",
    "ifgsm",
    "impersonation_loss",
    "luma",
    "make_diversity",
    "make_eot",
    "make_penalty",
    "mifgsm",
    "ssim",
    "ssim_map",
    "ti_dimifgsm",
]
