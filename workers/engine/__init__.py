"""The attack engine: pure PyTorch, tensors in and tensors out.

Budgets, update rules, input transforms (DI, JPEG, rescale, makeup), losses and the
iterative attack loop that composes them.
"""

from workers.engine.attack import (
    AttackResult,
    IterativeAttack,
    Objective,
    ObjectiveFn,
    difgsm,
    dimifgsm,
    fgsm,
    ifgsm,
    mifgsm,
    ti_dimifgsm,
)
from workers.engine.budget import LinfBudget
from workers.engine.diversity import InputDiversity, InputTransform
from workers.engine.jpeg import DifferentiableJpeg
from workers.engine.losses import (
    EnsembleLoss,
    cosine_similarity,
    dodging_loss,
    impersonation_loss,
)
from workers.engine.makeup import MakeupFilter
from workers.engine.rescale import RandomRescale
from workers.engine.smoothing import GradientSmoothing
from workers.engine.update import MomentumUpdate, SignUpdate, UpdateRule

__all__ = [
    "AttackResult",
    "DifferentiableJpeg",
    "EnsembleLoss",
    "GradientSmoothing",
    "InputDiversity",
    "InputTransform",
    "IterativeAttack",
    "LinfBudget",
    "MakeupFilter",
    "MomentumUpdate",
    "Objective",
    "ObjectiveFn",
    "RandomRescale",
    "SignUpdate",
    "UpdateRule",
    "cosine_similarity",
    "difgsm",
    "dimifgsm",
    "dodging_loss",
    "fgsm",
    "ifgsm",
    "impersonation_loss",
    "mifgsm",
    "ti_dimifgsm",
]
