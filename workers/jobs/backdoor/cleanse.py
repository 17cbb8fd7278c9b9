"""Trigger reverse-engineering (Neural Cleanse) over the engine: one mask + pattern per class.

For every candidate target ``t`` the engine searches the smallest mask ``m_t`` and pattern
``p_t`` that send clean inputs to ``t`` (cross-entropy toward ``t`` plus an L1 penalty on
the mask, Adam steps, all classes in one batch with :class:`GroupTriggerBudget`). A
backdoor target needs a much smaller mask than the other classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from workers.engine import (
    AdamUpdate,
    CrossEntropy,
    GroupTriggerBudget,
    IterativeAttack,
    ModelObjective,
    Persistent,
    TransformContext,
)

Model = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class CleanseSettings:
    """Adam ``steps`` at ``step_size``; ``per_class`` inputs per target; L1 weight per input."""

    steps: int = 150
    step_size: float = 0.1
    per_class: int = 16
    l1_weight: float = 0.01
    seed: int = 0


@dataclass
class Triggers:
    """The reverse-engineered trigger of every class."""

    masks: Tensor
    """``[K, 1, H, W]`` in [0, 1]."""
    patterns: Tensor
    """``[K, C, H, W]`` in [0, 1]."""
    norms: Tensor
    """``[K]`` L1 norm of each mask (pixels)."""
    success: Tensor
    """``[K]`` share of the inputs the trigger sends to its class."""


def reverse_engineer(
    model: Model, inputs: Tensor, classes: int, settings: CleanseSettings
) -> Triggers:
    """Search a trigger toward every class from ``inputs`` (``per_class`` of them each)."""
    gen = torch.Generator().manual_seed(settings.seed)
    count = min(settings.per_class, len(inputs))
    pick = torch.randperm(len(inputs), generator=gen)[:count]
    x = inputs[pick].repeat(classes, 1, 1, 1)
    group = torch.arange(classes).repeat_interleave(count)
    budget = GroupTriggerBudget(group, classes, settings.l1_weight * count)
    attack = IterativeAttack(budget, AdamUpdate(), settings.step_size, settings.steps)
    objective = Persistent(ModelObjective(model, [(CrossEntropy("label", targeted=True), 1.0)]))
    ctx = TransformContext.of_batch(len(x), label=group)
    result = attack.run(x, objective, ctx, generator=gen)
    assert result.param is not None
    masks, patterns = budget.split(result.param)
    with torch.no_grad():
        hit = model(budget.apply(result.param, x)).argmax(1) == group
    success = hit.float().view(classes, count).mean(1)
    return Triggers(masks.detach(), patterns.detach(), budget.mask_norms(result.param), success)
