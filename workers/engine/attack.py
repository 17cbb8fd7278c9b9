"""The generic iterative gradient attack (FGSM family) with per-sample early stopping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from workers.engine.budget import LinfBudget
from workers.engine.diversity import InputDiversity, InputTransform
from workers.engine.smoothing import GradientSmoothing
from workers.engine.update import MomentumUpdate, SignUpdate, UpdateRule


@dataclass
class Objective:
    """What an objective returns for the active samples."""

    loss: Tensor
    """``[b]`` per-sample loss, to MINIMISE."""
    done: Tensor
    """``[b]`` bool: the sample already meets its goal and can stop."""


ObjectiveFn = Callable[[Tensor, Tensor], Objective]
"""``(x_adv of the active samples [b, ...], their indices [b] into the batch) -> Objective``."""


@dataclass
class AttackResult:
    """The outcome of ``IterativeAttack.run`` for a batch of ``B`` samples."""

    delta: Tensor
    """``[B, ...]`` the perturbation (mask applied): the adversarial image is ``x + delta``."""
    steps: Tensor
    """``[B]`` int64: gradient steps each sample received."""
    done: Tensor
    """``[B]`` bool: the objective reported the sample done (it was then frozen)."""
    loss_history: list[float] = field(default_factory=list)
    """Mean loss of the active samples at each iteration, before its step."""


def _mask_rows(mask: Tensor | None, index: Tensor, x: Tensor) -> Tensor | None:
    """The rows of ``mask`` for samples ``index`` (a batch-less mask broadcasts)."""
    if mask is None:
        return None
    if mask.dim() == x.dim() and mask.shape[0] == x.shape[0]:
        return mask[index]
    return mask


class IterativeAttack:
    """Iterative L-infinity attack: ``delta <- project(delta - alpha * update(grad))``.

    Each iteration feeds ``x + delta * mask`` (through ``diversity`` if given) to the
    objective, smooths the gradient (``smoothing``, TI) and steps along the update rule's
    direction. Samples the objective reports done are frozen with their current delta and
    leave the batch; the loop ends when all are done or ``steps`` iterations have run.
    Done flags are honoured every ``check_every`` iterations (0, k, 2k, ...).
    """

    def __init__(
        self,
        eps: float,
        alpha: float,
        steps: int,
        update: UpdateRule,
        diversity: InputTransform | None = None,
        smoothing: GradientSmoothing | None = None,
        random_start: bool = False,
        check_every: int = 1,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.budget = LinfBudget(eps)
        self.alpha = float(alpha)
        self.steps = int(steps)
        self.update = update
        self.diversity = diversity
        self.smoothing = smoothing
        self.random_start = bool(random_start)
        self.check_every = int(check_every)

    @property
    def eps(self) -> float:
        """The L-infinity budget."""
        return self.budget.eps

    def run(
        self,
        x: Tensor,
        objective: ObjectiveFn,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AttackResult:
        """Attack the batch ``x`` ``[B, C, H, W]`` in ``[0, 1]``.

        ``mask`` (broadcastable to ``x``, e.g. ``[B, 1, H, W]`` or ``[1, 1, H, W]``, values in
        ``[0, 1]``) restricts where the perturbation lives. ``generator`` drives the random
        start and the input diversity; without one a generator seeded with 0 is used.
        """
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        x = x.detach()
        batch = x.shape[0]
        device = x.device
        if mask is not None:
            mask = mask.detach().to(device=device, dtype=x.dtype)
            torch.broadcast_shapes(mask.shape, x.shape)
        start = self.budget.random_start(x, generator) if self.random_start else None
        delta = torch.zeros_like(x) if start is None else start

        self.update.reset()
        active = torch.arange(batch, device=device)
        steps_run = torch.zeros(batch, dtype=torch.int64, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        history: list[float] = []

        for step in range(self.steps):
            current = delta[active].clone().requires_grad_(True)
            rows_mask = _mask_rows(mask, active, x)
            effective = current if rows_mask is None else current * rows_mask
            x_adv = x[active] + effective
            x_in = x_adv if self.diversity is None else self.diversity(x_adv, generator)
            out = objective(x_in, active)
            count = active.numel()
            if out.loss.shape != (count,) or out.done.shape != (count,):
                raise ValueError(
                    f"objective must return loss and done of shape [{count}], "
                    f"got {tuple(out.loss.shape)} and {tuple(out.done.shape)}"
                )
            history.append(float(out.loss.detach().mean().item()))

            finished = out.done.detach().to(device=device, dtype=torch.bool)
            if step % self.check_every != 0:
                finished = torch.zeros_like(finished)
            done[active[finished]] = True
            keep = ~finished
            if not bool(keep.any()):
                active = active[keep]
                break

            (grad,) = torch.autograd.grad(out.loss[keep].sum(), current)
            grad = grad[keep]
            index = active[keep]
            if self.smoothing is not None:
                grad = self.smoothing(grad)
            direction = self.update.direction(grad, index)
            stepped = current.detach()[keep] - self.alpha * direction
            delta[index] = self.budget.project(stepped, x[index])
            steps_run[index] += 1
            active = index

        if mask is not None:
            delta = delta * mask
        return AttackResult(delta=delta.detach(), steps=steps_run, done=done, loss_history=history)


def _default_alpha(eps: float, steps: int, alpha: float | None) -> float:
    """``alpha`` if given, else ``2.5 * eps / steps`` (2/255 for eps 8/255 and 10 steps)."""
    return 2.5 * eps / steps if alpha is None else alpha


def fgsm(eps: float) -> IterativeAttack:
    """FGSM: one signed-gradient step of size ``eps``."""
    return IterativeAttack(eps=eps, alpha=eps, steps=1, update=SignUpdate())


def ifgsm(
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    *,
    random_start: bool = False,
    check_every: int = 1,
) -> IterativeAttack:
    """I-FGSM (BIM; PGD with ``random_start=True``)."""
    return IterativeAttack(
        eps=eps,
        alpha=_default_alpha(eps, steps, alpha),
        steps=steps,
        update=SignUpdate(),
        random_start=random_start,
        check_every=check_every,
    )


def mifgsm(
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    decay: float = 1.0,
    *,
    random_start: bool = False,
    check_every: int = 1,
) -> IterativeAttack:
    """MI-FGSM: I-FGSM with gradient momentum."""
    return IterativeAttack(
        eps=eps,
        alpha=_default_alpha(eps, steps, alpha),
        steps=steps,
        update=MomentumUpdate(decay),
        random_start=random_start,
        check_every=check_every,
    )


def difgsm(
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    prob: float = 0.7,
    resize_rate: float = 1.1,
    *,
    random_start: bool = False,
    check_every: int = 1,
) -> IterativeAttack:
    """DI-FGSM: I-FGSM on randomly resized and padded inputs."""
    return IterativeAttack(
        eps=eps,
        alpha=_default_alpha(eps, steps, alpha),
        steps=steps,
        update=SignUpdate(),
        diversity=InputDiversity(prob, resize_rate),
        random_start=random_start,
        check_every=check_every,
    )


def dimifgsm(
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    decay: float = 1.0,
    prob: float = 0.7,
    resize_rate: float = 1.1,
    *,
    random_start: bool = False,
    check_every: int = 1,
) -> IterativeAttack:
    """DI-MI-FGSM (M-DI2-FGSM): input diversity plus momentum."""
    return IterativeAttack(
        eps=eps,
        alpha=_default_alpha(eps, steps, alpha),
        steps=steps,
        update=MomentumUpdate(decay),
        diversity=InputDiversity(prob, resize_rate),
        random_start=random_start,
        check_every=check_every,
    )


def ti_dimifgsm(
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    decay: float = 1.0,
    prob: float = 0.7,
    resize_rate: float = 1.1,
    kernel_size: int = 7,
    sigma: float = 3.0,
    *,
    random_start: bool = False,
    check_every: int = 1,
) -> IterativeAttack:
    """TI-DI-MI-FGSM: input diversity, momentum and Gaussian gradient smoothing."""
    return IterativeAttack(
        eps=eps,
        alpha=_default_alpha(eps, steps, alpha),
        steps=steps,
        update=MomentumUpdate(decay),
        diversity=InputDiversity(prob, resize_rate),
        smoothing=GradientSmoothing(kernel_size, sigma),
        random_start=random_start,
        check_every=check_every,
    )
