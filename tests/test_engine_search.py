"""Engine pieces of the visibility search: RMS steps, on_step, shrink mode, ScaleSearch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from workers.engine import (
    IterativeAttack,
    LinfBudget,
    ObjectiveValue,
    PerceptualBudget,
    RmsUpdate,
    ScaleSearch,
    StepEvent,
    TransformContext,
)


class MeanBelow:
    """Loss: the mean of each sample; done once it is below ``target``."""

    def __init__(self, target: float) -> None:
        self.target = target

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        loss = x.flatten(1).mean(1)
        return ObjectiveValue(loss, loss.detach() < self.target)


def _x() -> Tensor:
    return torch.full((2, 3, 8, 8), 0.5)


def test_rms_update_keeps_the_gradient_shape_at_unit_rms() -> None:
    grad = torch.zeros(1, 1, 2, 2)
    grad[0, 0, 0, 0] = 4.0
    grad[0, 0, 1, 1] = 1.0
    d = RmsUpdate().direction(grad, torch.tensor([0]))
    assert d.square().mean().sqrt().item() == pytest.approx(1.0)
    assert d[0, 0, 0, 1].item() == 0.0 and d[0, 0, 0, 0] > d[0, 0, 1, 1] > 0  # not sign steps


def test_on_step_reports_every_iteration_and_an_exception_stops_the_loop() -> None:
    events: list[StepEvent] = []
    attack = IterativeAttack(LinfBudget(0.1), RmsUpdate(), 0.01, steps=50)

    def cancel(event: StepEvent) -> None:
        events.append(event)
        if event.step == 2:
            raise KeyboardInterrupt("canceled")

    with pytest.raises(KeyboardInterrupt):
        attack.run(_x(), MeanBelow(-1.0), on_step=cancel)
    assert [e.step for e in events] == [0, 1, 2] and events[0].steps == 50
    assert events[-1].active.tolist() == [0, 1]


def test_init_warm_starts_the_attack() -> None:
    attack = IterativeAttack(LinfBudget(0.1), RmsUpdate(), 0.01, steps=1)
    init = torch.full_like(_x(), -0.5)  # projected into the budget
    out = attack.run(_x(), MeanBelow(0.45), init=init)
    assert out.done.all() and out.steps.tolist() == [0, 0]
    assert out.delta.min().item() == pytest.approx(-0.1)


def test_shrink_mode_returns_the_smallest_delta_that_held() -> None:
    x = _x()
    attack = IterativeAttack(LinfBudget(0.2), RmsUpdate(), 0.002, steps=40, shrink=0.7)
    out = attack.run(x, MeanBelow(0.45), init=torch.full_like(x, -0.2))
    assert out.done.all()
    mean = (x + out.delta).flatten(1).mean(1)
    assert (mean < 0.45).all()  # still holds
    assert (out.delta.abs().amax(dim=(1, 2, 3)) < 0.1).all()  # far smaller than it started


def test_scale_search_shrinks_while_it_holds() -> None:
    x, delta = _x(), torch.full_like(_x(), -0.2)

    def holds(x_adv: Tensor, index: Tensor) -> Tensor:
        return x_adv.flatten(1).mean(1) < 0.45

    eligible = torch.tensor([True, False])
    out = ScaleSearch(factor=0.7, iterations=30).run(x, delta, holds, eligible=eligible)
    assert out.scale[1].item() == 1.0
    assert 0.05 / 0.2 <= out.scale[0].item() < 0.05 / 0.2 / 0.85 + 1e-6


def test_perceptual_budget_in_a_spec_keeps_grey_photos_grey() -> None:
    budget = PerceptualBudget(8 / 255, 1 / 255)
    x = torch.rand(1, 1, 16, 16).expand(1, 3, 16, 16).contiguous()
    d = budget.project(torch.randn(1, 3, 16, 16) * 0.1, x)
    assert torch.equal(d[:, 0], d[:, 1]) and torch.equal(d[:, 1], d[:, 2])


class _CountingBackward(torch.autograd.Function):
    """Identity whose backward counts its calls (a model's backward pass)."""

    calls = 0

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        _CountingBackward.calls += 1
        return grad


class CountedMeanBelow(MeanBelow):
    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        return super().__call__(_CountingBackward.apply(x), ctx, gen)


def _l2(x_adv: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
    return (x_adv - x).square().flatten(1).mean(1)


def test_shrink_steps_that_all_hold_skip_the_models_backward() -> None:
    """Held samples step on the penalty alone: when all hold, no backward through the
    objective is run (the penalty still shrinks the delta)."""
    x = _x()
    init = torch.full_like(x, -0.2)

    def run(objective: MeanBelow) -> Tensor:
        attack = IterativeAttack(
            LinfBudget(0.2), RmsUpdate(), 0.002, steps=6, shrink=0.9, penalty=_l2
        )
        return attack.run(x, objective, init=init).delta

    _CountingBackward.calls = 0
    held = run(CountedMeanBelow(0.45))  # every step holds (mean <= 0.3)
    assert _CountingBackward.calls == 0
    assert held.abs().max() < 0.2 * 0.9**4  # kept shrinking
    _CountingBackward.calls = 0
    run(CountedMeanBelow(0.25))  # never holds: the objective's gradient is needed
    assert _CountingBackward.calls == 6
