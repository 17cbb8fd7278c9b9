"""Bias maps (Borji, "Adversarial examples are useful too!"): Algorithms I and II.

Algorithm I crafts, for every class ``t``, targeted adversarial examples toward ``t`` from
blank images (grey levels), white noise and unlabelled data with iterated FGSM, and
averages the perturbations of those the model assigns to ``t``: the class's bias map. A
backdoor's trigger is the shortest way to its target, so it shows in the target's map,
and the target is reached in fewer steps. Algorithm II (Eq. 2) pushes inputs the model
puts in ``s`` toward ``t`` and away from ``s`` at once; the source of a source-specific
trigger is the class that flips most easily.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from workers.engine import (
    AttackSpec,
    CrossEntropy,
    ModelObjective,
    TransformContext,
    build_attack,
)
from workers.engine.objectives import Model


@dataclass(frozen=True)
class BiasSettings:
    """Iterated FGSM of the scan: L-inf ``eps``, ``steps`` (step ``2.5 eps / steps``)."""

    eps: float = 0.3
    steps: int = 20
    blanks: int = 4
    noise: int = 8
    data: int = 32
    seed: int = 0

    def spec(self) -> AttackSpec:
        """The engine spec: I-FGSM (sign steps, L-inf), early stop once the class is hit."""
        return AttackSpec(eps=self.eps, steps=self.steps, optimizer="sign")


@dataclass
class BiasMaps:
    """Per class ``k``: the bias map, how many inputs reached it, mean steps, success rate."""

    maps: Tensor
    """``[K, C, H, W]`` mean perturbation of the examples assigned to ``k``."""
    steps: Tensor
    """``[K]`` mean steps to reach ``k`` (``steps + 1`` for inputs that never did)."""
    success: Tensor
    """``[K]`` share of inputs that reached ``k``."""


def seed_inputs(
    shape: tuple[int, int, int], settings: BiasSettings, data: Tensor | None, gen: torch.Generator
) -> Tensor:
    """Blank images (grey levels), uniform white noise and up to ``settings.data`` samples."""
    blanks = torch.linspace(0.0, 1.0, settings.blanks).view(-1, 1, 1, 1).expand(-1, *shape)
    noise = torch.rand((settings.noise, *shape), generator=gen)
    parts = [blanks, noise]
    if data is not None and len(data):
        parts.append(data[: settings.data])
    return torch.cat(parts).contiguous()


def _attack(
    model: Model,
    x: Tensor,
    ctx: TransformContext,
    losses: list[tuple[CrossEntropy, float]],
    settings: BiasSettings,
) -> tuple[Tensor, Tensor, Tensor]:
    """(adversarial perturbations, steps taken, predictions) of one engine run."""
    gen = torch.Generator().manual_seed(settings.seed)
    result = build_attack(settings.spec()).run(x, ModelObjective(model, losses), ctx, generator=gen)
    with torch.no_grad():
        pred = model(x + result.delta).argmax(1)
    return result.delta, result.steps, pred


def _per_class(
    delta: Tensor, steps: Tensor, pred: Tensor, target: Tensor, groups: int, max_steps: int
) -> BiasMaps:
    """Average what reached its target, per target."""
    hit = pred == target
    taken = torch.where(hit, steps.float(), torch.full_like(steps.float(), max_steps + 1.0))
    maps = torch.zeros((groups, *delta.shape[1:]))
    mean_steps, success = torch.zeros(groups), torch.zeros(groups)
    for k in range(groups):
        rows = target == k
        good = rows & hit
        if bool(good.any()):
            maps[k] = delta[good].mean(0)
        mean_steps[k] = taken[rows].mean()
        success[k] = hit[rows].float().mean()
    return BiasMaps(maps, mean_steps, success)


def algorithm_one(model: Model, inputs: Tensor, classes: int, settings: BiasSettings) -> BiasMaps:
    """Bias maps toward every class from ``inputs`` (one engine run over all targets)."""
    n = len(inputs)
    x = inputs.repeat(classes, 1, 1, 1)
    target = torch.arange(classes).repeat_interleave(n)
    ctx = TransformContext.of_batch(len(x), label=target)
    delta, steps, pred = _attack(
        model, x, ctx, [(CrossEntropy("label", targeted=True), 1.0)], settings
    )
    return _per_class(delta, steps, pred, target, classes, settings.steps)


def algorithm_two(
    model: Model, inputs: Tensor, sources: Tensor, target: int, classes: int, settings: BiasSettings
) -> BiasMaps:
    """Pairwise maps ``s -> target`` (Eq. 2): push toward ``target`` and away from ``s``.

    ``sources[i]`` is the class input ``i`` stands for (the model's own prediction on
    data; blank and noise inputs are tried as every source). Row ``s`` of the result
    describes the pair ``(s, target)``; row ``target`` is empty.
    """
    rows, labels = [], []
    for s in range(classes):
        if s == target:
            continue
        pick = inputs[sources == s]
        if len(pick):
            rows.append(pick)
            labels.append(torch.full((len(pick),), s))
    if not rows:
        empty = torch.zeros(classes)
        return BiasMaps(torch.zeros((classes, *inputs.shape[1:])), empty, empty)
    x, source = torch.cat(rows), torch.cat(labels)
    ctx = TransformContext.of_batch(len(x), target=torch.full_like(source, target), source=source)
    losses = [(CrossEntropy("target", targeted=True), 1.0), (CrossEntropy("source"), 1.0)]
    delta, steps, pred = _attack(model, x, ctx, losses, settings)
    reached = torch.where(pred == target, source, torch.full_like(source, -1))
    return _per_class(delta, steps, reached, source, classes, settings.steps)


def pair_inputs(
    model: Model, data: Tensor | None, seeds: Tensor, classes: int
) -> tuple[Tensor, Tensor]:
    """Inputs of Algorithm II and the source each stands for: data by the model's own
    prediction, and every blank/noise seed as each class.
    """
    parts, sources = [], []
    if data is not None and len(data):
        with torch.no_grad():
            parts.append(data)
            sources.append(model(data).argmax(1))
    parts.append(seeds.repeat(classes, 1, 1, 1))
    sources.append(torch.arange(classes).repeat_interleave(len(seeds)))
    return torch.cat(parts), torch.cat(sources)
