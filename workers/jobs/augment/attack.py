"""The job's attack: the engine's cross-entropy, L-inf budget, momentum steps and EOT.

Cross-entropy (untargeted, or targeted at per-sample classes) averaged over EOT samples
(random blur and rescale, when ``eot_samples > 1``), MI-FGSM steps under an L-inf budget
with 8-bit rounding in the loop, per-sample early stop once the goal is met.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facecloak.contract.augment import AugmentOptions
from workers.engine import (
    AttackSpec,
    CrossEntropy,
    EotStep,
    Expectation,
    ModelObjective,
    TransformContext,
    build_attack,
    make_eot,
)

BATCH = 512


def attack_spec(options: AugmentOptions) -> AttackSpec:
    """The spec of ``options``: MI-FGSM (L-inf) with 8-bit rounding, EOT when asked."""
    eot = (EotStep("blur", 0.5, {"sigma": 0.6}), EotStep("rescale", 0.5, {"scale": (0.8, 1.0)}))
    return AttackSpec(
        eps=options.eps,
        steps=options.steps,
        step_size=options.step_size,
        optimizer="momentum",
        eot=eot if options.eot_samples > 1 else (),
        eot_samples=options.eot_samples,
        quantise=True,
    )


@dataclass
class Attacked:
    """Per image: the change ``delta`` (``x + delta`` in [0, 1], on the 8-bit grid), the
    steps used and whether the goal was met within the budget."""

    delta: Tensor
    steps: Tensor
    done: Tensor


def attack(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    spec: AttackSpec,
    targeted: bool = False,
    seed: int = 0,
    confidence: float = 0.0,
) -> Attacked:
    """Attack ``x`` ``[N, C, H, W]`` in batches: away from ``labels``, or toward them; a
    sample is done once the prediction holds with softmax probability ``confidence``."""
    deltas, steps, done = [], [], []
    gen = torch.Generator().manual_seed(seed)
    goal = CrossEntropy("label", targeted=targeted, confidence=confidence)
    loss = ModelObjective(model, [(goal, 1.0)])
    objective = Expectation(loss, make_eot(spec))
    loop = build_attack(spec)
    for start in range(0, len(x), BATCH):
        xb, yb = x[start : start + BATCH], labels[start : start + BATCH]
        ctx = TransformContext.of_batch(len(xb), label=yb)
        result = loop.run(xb, objective, ctx, generator=gen)
        adv = quantised(xb + result.delta)
        deltas.append(adv - xb)
        steps.append(result.steps)
        done.append(result.done)
    if not deltas:
        empty = torch.zeros(0, dtype=torch.long)
        return Attacked(torch.zeros_like(x), empty, empty.bool())
    return Attacked(torch.cat(deltas), torch.cat(steps), torch.cat(done))


def quantised(x: Tensor) -> Tensor:
    """``x`` clamped to [0, 1] and rounded to the 8-bit grid (what a saved PNG holds)."""
    return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0


def mediate(x: Tensor, delta: Tensor, phi: float) -> Tensor:
    """Mediate samples ``x + phi * delta`` (on the 8-bit grid)."""
    return quantised(x + phi * delta)


def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Predicted classes of ``x`` (batched, no gradients)."""
    with torch.no_grad():
        parts = [model(x[i : i + BATCH]).argmax(1) for i in range(0, len(x), BATCH)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Share of ``x`` classified as ``y``."""
    return float((predict(model, x) == y).float().mean()) if len(x) else 0.0


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, seed: int) -> float:
    """Accuracy under a fresh untargeted attack on ``model`` itself (white box)."""
    if not len(x):
        return 0.0
    hit = attack(model, x, y, spec, targeted=False, seed=seed)
    return accuracy(model, quantised(x + hit.delta), y)
