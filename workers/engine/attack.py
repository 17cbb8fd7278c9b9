"""The one iterative attack loop: budget + optimiser + objective, per-sample early stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from workers.engine.budget import Budget, SharedBudget
from workers.engine.objectives import INPUT, Objective, ObjectiveValue
from workers.engine.smoothing import GradientSmoothing
from workers.engine.transforms import Transform, TransformContext
from workers.engine.update import UpdateRule


@dataclass
class AttackResult:
    """The outcome of ``IterativeAttack.run`` for a batch of ``B`` samples."""

    delta: Tensor
    """``[B, ...]`` the change (mask applied): the adversarial image is ``x + delta``."""
    steps: Tensor
    """``[B]`` int64: gradient steps each sample received."""
    done: Tensor
    """``[B]`` bool: the objective reported the sample done (it was then frozen)."""
    loss_history: list[float] = field(default_factory=list)
    """Mean loss of the active samples at each iteration, before its step."""
    param: Tensor | None = None
    """A shared budget's final parameter (e.g. trigger mask + pattern)."""


@dataclass(frozen=True)
class StepEvent:
    """What the loop reports after each iteration (``on_step``)."""

    step: int
    """The iteration just finished, from 0."""
    steps: int
    """Iterations planned."""
    active: Tensor
    """Indices (into the batch) of the samples still attacked after this iteration."""
    done: Tensor
    """``[B]`` bool: samples reported done so far."""


OnStep = Callable[[StepEvent], None]
"""Called after every iteration; an exception it raises stops the attack (cancellation)."""
Penalty = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""``(x_adv [b, ...], x [b, ...], mask or None) -> [b]``: a cost of the change itself (e.g.
its visibility, :class:`workers.engine.flip.FlipLoss`), added to the loss."""


def _mask_rows(mask: Tensor | None, index: Tensor, x: Tensor) -> Tensor | None:
    """The rows of ``mask`` for samples ``index`` (a batch-less mask broadcasts)."""
    if mask is None:
        return None
    if mask.dim() == x.dim() and mask.shape[0] == x.shape[0]:
        return mask[index]
    return mask


def _checked(out: ObjectiveValue, count: int) -> ObjectiveValue:
    if out.loss.shape != (count,) or out.done.shape != (count,):
        raise ValueError(
            f"objective must return loss and done of shape [{count}], "
            f"got {tuple(out.loss.shape)} and {tuple(out.done.shape)}"
        )
    return out


class IterativeAttack:
    """``param <- project(param - step_size * update(smooth(grad)))`` for ``steps`` iterations.

    With an additive :class:`Budget` the parameter is a per-sample ``delta`` (times
    ``mask``); samples the objective reports done are frozen and leave the batch (done
    flags are honoured at iterations 0, k, 2k, ... for ``check_every = k``). With a
    :class:`SharedBudget` one parameter serves the batch, its ``penalty`` is added to the
    loss, and the loop stops once every sample is done. ``input_transform`` (e.g.
    8-bit quantisation, input diversity) sits between the attacked image and the objective.

    Shrink mode (``shrink = f``, additive budgets): done samples are not frozen; each
    iteration on which a sample is done its ``delta`` is kept as its best and multiplied by
    ``f``, and on the others it takes a step, so the loop runs every iteration and returns
    each done sample's last ``delta`` that held: the smallest it found.

    ``penalty`` (additive budgets) is added to every sample's loss, times
    ``penalty_weight``. In shrink mode a sample that holds then steps on the penalty alone,
    one that lost it on its loss plus the penalty, and the delta kept is the one with the
    lowest penalty among those that held.
    """

    def __init__(
        self,
        budget: Budget | SharedBudget,
        update: UpdateRule,
        step_size: float,
        steps: int,
        input_transform: Transform | None = None,
        smoothing: GradientSmoothing | None = None,
        random_start: bool = False,
        check_every: int = 1,
        shrink: float | None = None,
        penalty: Penalty | None = None,
        penalty_weight: float = 1.0,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.budget = budget
        self.update = update
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.input_transform = input_transform
        self.smoothing = smoothing
        self.random_start = bool(random_start)
        self.check_every = int(check_every)
        if shrink is not None and not 0.0 < shrink < 1.0:
            raise ValueError(f"shrink must lie in (0, 1), got {shrink}")
        self.shrink = shrink
        self.penalty = penalty
        self.penalty_weight = float(penalty_weight)

    def run(
        self,
        x: Tensor,
        objective: Objective,
        ctx: TransformContext | None = None,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        init: Tensor | None = None,
        on_step: OnStep | None = None,
    ) -> AttackResult:
        """Attack the batch ``x`` ``[B, C, H, W]`` in ``[0, 1]``.

        ``ctx`` carries per-sample side data (``ctx["input"]`` is set to ``x``). ``mask``
        (broadcastable to ``x``, values in ``[0, 1]``) restricts where an additive
        perturbation lives. Without ``generator`` one seeded with 0 is used. ``init`` is an
        additive attack's starting ``delta`` (projected; e.g. a smaller budget's result),
        instead of zero or the random start. ``on_step`` is called after every iteration.
        """
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        x = x.detach()
        ctx = TransformContext.of_batch(x.shape[0], x.device) if ctx is None else ctx
        if len(ctx) != x.shape[0]:
            raise ValueError(f"context has {len(ctx)} rows for a batch of {x.shape[0]}")
        ctx = ctx if INPUT in ctx else ctx.with_data(**{INPUT: x})
        self.update.reset()
        if isinstance(self.budget, SharedBudget):
            return self._run_shared(self.budget, x, objective, ctx, gen, on_step)
        if mask is not None:
            mask = mask.detach().to(device=x.device, dtype=x.dtype)
            torch.broadcast_shapes(mask.shape, x.shape)
        if init is not None:
            init = self.budget.project(init.detach().to(device=x.device, dtype=x.dtype), x)
        return self._run_additive(self.budget, x, objective, ctx, mask, gen, init, on_step)

    def evaluate(
        self, x_adv: Tensor, objective: Objective, ctx: TransformContext, gen: torch.Generator
    ) -> ObjectiveValue:
        """The objective on ``x_adv`` after the loop's input transform (no step taken)."""
        x_in = x_adv if self.input_transform is None else self.input_transform(x_adv, ctx, gen)
        return _checked(objective(x_in, ctx, gen), x_adv.shape[0])

    def _direction(self, grad: Tensor, index: Tensor) -> Tensor:
        if self.smoothing is not None:
            grad = self.smoothing(grad)
        return self.update.direction(grad, index)

    def _run_additive(
        self,
        budget: Budget,
        x: Tensor,
        objective: Objective,
        ctx: TransformContext,
        mask: Tensor | None,
        gen: torch.Generator,
        init: Tensor | None = None,
        on_step: OnStep | None = None,
    ) -> AttackResult:
        batch, device = x.shape[0], x.device
        if init is not None:
            delta = init.clone()
        else:
            delta = budget.random_start(x, gen) if self.random_start else torch.zeros_like(x)
        active = torch.arange(batch, device=device)
        steps_run = torch.zeros(batch, dtype=torch.int64, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        best = delta.clone()  # shrink mode: the delta kept for each sample that held
        best_cost = torch.full((batch,), float("inf"), device=device)
        history: list[float] = []
        for step in range(self.steps):
            current = delta[active].clone().requires_grad_(True)
            rows_mask = _mask_rows(mask, active, x)
            effective = current if rows_mask is None else current * rows_mask
            x_adv = x[active] + effective
            out = self.evaluate(x_adv, objective, ctx.select(active), gen)
            history.append(float(out.loss.detach().mean().item()))
            finished = out.done.detach().to(device=device, dtype=torch.bool)
            if step % self.check_every != 0:
                finished = torch.zeros_like(finished)
            done[active[finished]] = True
            keep = ~finished
            loss = out.loss
            if self.penalty is not None:
                cost = self.penalty_weight * self.penalty(x_adv, x[active], rows_mask)
                if self.shrink is None:
                    loss = loss + cost
                elif bool(finished.all()):  # all held: the gradient needs no backward
                    loss = cost  # through the models (same step, far cheaper)
                else:
                    loss = torch.where(finished, 0.0, loss) + cost
            if self.shrink is not None:  # held: remember, shrink, and stay in the batch
                held = active[finished]
                if self.penalty is None:
                    best[held] = delta[held]
                else:
                    lower = cost.detach()[finished] < best_cost[held]
                    best[held[lower]] = delta[held[lower]]
                    best_cost[held[lower]] = cost.detach()[finished][lower]
                delta[held] = delta[held] * self.shrink
                if self.penalty is not None:  # held samples step on the penalty too
                    keep = torch.ones_like(keep)
            if bool(keep.any()):
                (grad,) = torch.autograd.grad(loss[keep].sum(), current)
                index = active[keep]
                direction = self._direction(grad[keep], index)
                stepped = delta[index] - self.step_size * direction
                delta[index] = budget.project(stepped, x[index])
                steps_run[index] += 1
            if self.shrink is None:
                active = active[keep]
            if on_step is not None:
                on_step(StepEvent(step, self.steps, active, done))
            if active.numel() == 0:
                break
        if self.shrink is not None:
            delta = torch.where(done.view(-1, *([1] * (x.dim() - 1))), best, delta)
        if mask is not None:
            delta = delta * mask
        return AttackResult(delta=delta.detach(), steps=steps_run, done=done, loss_history=history)

    def _run_shared(
        self,
        budget: SharedBudget,
        x: Tensor,
        objective: Objective,
        ctx: TransformContext,
        gen: torch.Generator,
        on_step: OnStep | None = None,
    ) -> AttackResult:
        batch, device = x.shape[0], x.device
        param = budget.initial(x, gen)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        history: list[float] = []
        steps_taken = 0
        for step in range(self.steps):
            current = param.clone().requires_grad_(True)
            out = self.evaluate(budget.apply(current, x), objective, ctx, gen)
            loss = out.loss.sum() + budget.penalty(current)
            history.append(float(loss.detach().item()) / batch)
            done = out.done.detach().to(device=device, dtype=torch.bool)
            if step % self.check_every == 0 and bool(done.all()):
                break
            (grad,) = torch.autograd.grad(loss, current)
            direction = self._direction(grad, torch.zeros(1, dtype=torch.long, device=device))
            param = budget.project(current.detach() - self.step_size * direction, x)
            steps_taken += 1
            if on_step is not None:
                active = torch.arange(batch, device=device)
                on_step(StepEvent(step, self.steps, active, done))
        with torch.no_grad():
            delta = budget.apply(param, x) - x
        steps = torch.full((batch,), steps_taken, dtype=torch.int64, device=device)
        return AttackResult(delta=delta, steps=steps, done=done, loss_history=history, param=param)
