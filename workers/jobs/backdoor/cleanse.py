"""Trigger reverse-engineering (Neural Cleanse) over the engine: one mask + pattern per class.

For every candidate target ``t`` the engine searches the smallest mask ``m_t`` and pattern
``p_t`` that send clean inputs to ``t`` (cross-entropy toward ``t`` plus an L1 penalty on
the mask, Adam steps, all classes in one batch with :class:`GroupTriggerBudget`). A
backdoor target needs a much smaller mask than the other classes. The pairwise search
(one trigger per source -> target pair, from the inputs the model puts in the source) finds
source-specific triggers, which only need a tiny mask for their one pair.
"""

from __future__ import annotations

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
from workers.engine.objectives import Model


@dataclass(frozen=True)
class CleanseSettings:
    """Adam ``steps`` at ``step_size``; ``per_class`` inputs per target; L1 weight per input."""

    steps: int = 150
    step_size: float = 0.1
    per_class: int = 16
    l1_weight: float = 0.01
    seed: int = 0
    stamp_share: float = 0.01
    """The compact stamp keeps this share of the image's pixels of each mask, and at least
    ``stamp_min`` (8: 1% of 28x28)."""
    stamp_min: int = 8


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
    stamp_success: Tensor
    """``[K]`` share of the inputs (all given, less those already in the class) that the
    trigger cut to a small hard stamp (its mask's largest ``stamp_share`` of pixels, set to
    1) sends to the class: a planted patch or blend survives the cut, a class's natural
    strokes, spread over the image, mostly do not."""
    stamp_trials: Tensor
    """``[K]`` how many inputs each stamp was tried on."""


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
    area = inputs.shape[-2] * inputs.shape[-1]
    pixels = min(area, max(settings.stamp_min, round(settings.stamp_share * area)))
    stamp_success, trials = _stamp_success(
        model, inputs, budget.compact(result.param, pixels), budget
    )
    return Triggers(
        masks.detach(),
        patterns.detach(),
        budget.mask_norms(result.param),
        success,
        stamp_success,
        trials,
    )


def _stamp_success(
    model: Model, inputs: Tensor, stamps: Tensor, budget: GroupTriggerBudget
) -> tuple[Tensor, Tensor]:
    """Per class: the share of ``inputs`` not already in it that its stamp sends there,
    and how many inputs that was (every class's stamped inputs in one batch)."""
    classes = budget.groups
    with torch.no_grad():
        labels = torch.arange(classes, device=inputs.device)
        outside = model(inputs).argmax(1)[None, :] != labels[:, None]
        group, row = outside.nonzero(as_tuple=True)  # (class, input) pairs to stamp
        trials = outside.sum(1).float()
        success = torch.zeros(classes, device=inputs.device)
        if group.numel():
            stamped = GroupTriggerBudget(group, classes).apply(stamps, inputs[row])
            hits = (model(stamped).argmax(1) == group).float()
            success.index_add_(0, group, hits)
            success = success / trials.clamp_min(1.0)
    return success.cpu(), trials.cpu()


@dataclass
class PairTriggers:
    """The reverse-engineered trigger of every source -> target pair (source-specific)."""

    norms: Tensor
    """``[K, K]`` L1 norm of the mask for ``source -> target`` (NaN on the diagonal and
    for sources no input stands for)."""
    success: Tensor
    """``[K, K]`` share of the source's inputs the trigger sends to the target (NaN likewise)."""
    masks: Tensor
    """``[K, K, 1, H, W]`` the mask of each pair (zeros where there is none)."""


def reverse_engineer_pairs(
    model: Model, inputs: Tensor, classes: int, settings: CleanseSettings, per_source: int = 6
) -> PairTriggers:
    """Search a trigger for every pair ``s -> t`` from the inputs the model puts in ``s``.

    A source-specific backdoor (only inputs of ``s`` flip) needs a tiny mask for its one
    pair, while its target needs an ordinary one from the other classes. Each source gets
    ``per_source`` inputs (repeated when it has fewer); all pairs run in one batch.
    """
    with torch.no_grad():
        pred = model(inputs).argmax(1)
    parts, targets, pairs = [], [], []
    for s in range(classes):
        pool = inputs[pred == s]
        if not len(pool):
            continue
        rows = pool[torch.arange(per_source) % len(pool)]
        for t in range(classes):
            if t != s:
                pairs.append((s, t))
                parts.append(rows)
                targets.append(torch.full((per_source,), t))
    norms = torch.full((classes, classes), float("nan"))
    success = norms.clone()
    masks = torch.zeros((classes, classes, 1, *inputs.shape[-2:]))
    if not pairs:
        return PairTriggers(norms, success, masks)
    x, target = torch.cat(parts), torch.cat(targets)
    group = torch.arange(len(pairs)).repeat_interleave(per_source)
    budget = GroupTriggerBudget(group, len(pairs), settings.l1_weight * per_source)
    attack = IterativeAttack(budget, AdamUpdate(), settings.step_size, settings.steps)
    objective = Persistent(ModelObjective(model, [(CrossEntropy("label", targeted=True), 1.0)]))
    gen = torch.Generator().manual_seed(settings.seed)
    ctx = TransformContext.of_batch(len(x), label=target)
    result = attack.run(x, objective, ctx, generator=gen)
    assert result.param is not None
    with torch.no_grad():
        hit = model(budget.apply(result.param, x)).argmax(1) == target
    rates = hit.float().view(len(pairs), per_source).mean(1)
    found, stamps = budget.mask_norms(result.param), budget.split(result.param)[0].detach()
    for g, (s, t) in enumerate(pairs):
        norms[s, t], success[s, t], masks[s, t] = found[g], rates[g], stamps[g]
    return PairTriggers(norms, success, masks)
