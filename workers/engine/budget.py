"""Perturbation budgets: what the attack may change, as projection and random start.

An additive budget (:class:`Budget`) bounds a per-sample ``delta`` with ``x + delta`` the
attacked image; any object with ``project(delta, x)`` and ``random_start(x, gen)`` plugs
in (L-inf, L2, perceptual). A :class:`SharedBudget` instead owns one parameter shared by
the whole batch and says how it applies (a backdoor trigger: mask + pattern).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


class Budget(Protocol):
    """A set of allowed additive perturbations ``delta`` (``[B, ...]`` like ``x``)."""

    def project(self, delta: Tensor, x: Tensor, /) -> Tensor: ...

    def random_start(self, x: Tensor, gen: torch.Generator, /) -> Tensor: ...


@runtime_checkable
class SharedBudget(Protocol):
    """One parameter for the whole batch: ``apply(param, x)`` is the attacked batch."""

    def initial(self, x: Tensor, gen: torch.Generator) -> Tensor: ...

    def apply(self, param: Tensor, x: Tensor) -> Tensor: ...

    def project(self, param: Tensor, x: Tensor) -> Tensor: ...

    def penalty(self, param: Tensor) -> Tensor: ...


def keep_valid(delta: Tensor, x: Tensor) -> Tensor:
    """``delta`` clipped so that ``x + delta`` stays in ``[0, 1]``."""
    return torch.maximum(torch.minimum(delta, 1.0 - x), -x)


class LinfBudget:
    """``|delta| <= eps`` per pixel, ``x + delta`` in ``[0, 1]``."""

    kind = "linf"

    def __init__(self, eps: float) -> None:
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def project(self, delta: Tensor, x: Tensor) -> Tensor:
        """Clip ``delta`` into the eps-ball and so that ``x + delta`` stays a valid image."""
        return keep_valid(delta.clamp(-self.eps, self.eps), x)

    def random_start(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """A uniform random perturbation in the eps-ball, already projected.

        Sampled on the generator's device, then moved to ``x``'s device.
        """
        noise = torch.rand(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
        delta = (noise * 2.0 - 1.0) * self.eps
        return self.project(delta.to(x.device), x)


class L2Budget:
    """``||delta||_2 <= eps`` per sample, ``x + delta`` in ``[0, 1]``."""

    kind = "l2"

    def __init__(self, eps: float) -> None:
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def project(self, delta: Tensor, x: Tensor) -> Tensor:
        """Scale each sample's ``delta`` into the L2 ball, then keep pixels valid."""
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = (self.eps / norms).clamp(max=1.0).view(-1, *([1] * (delta.dim() - 1)))
        return keep_valid(delta * factor, x)

    def random_start(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """A random direction with a uniform radius in ``[0, eps]``, projected."""
        noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
        radius = torch.rand((x.shape[0],), generator=gen, device=gen.device, dtype=x.dtype)
        unit = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(
            -1, *([1] * (x.dim() - 1))
        )
        delta = unit * (radius * self.eps).view(-1, *([1] * (x.dim() - 1)))
        return self.project(delta.to(x.device), x)


class TriggerBudget:
    """A universal trigger: mask ``m`` ``[1, 1, H, W]`` and pattern ``p`` ``[1, C, H, W]``
    shared by the batch, ``x' = (1 - m) x + m p``, both in ``[0, 1]``.

    The parameter is ``cat([m, p], 1)`` ``[1, 1 + C, H, W]``; ``penalty`` is
    ``l1_weight * sum(m)``, which keeps the reverse-engineered trigger small.
    """

    kind = "trigger"

    def __init__(self, l1_weight: float = 1e-3) -> None:
        if l1_weight < 0:
            raise ValueError(f"l1_weight must be >= 0, got {l1_weight}")
        self.l1_weight = float(l1_weight)

    def initial(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """A faint mask and a random pattern."""
        _, channels, height, width = x.shape
        pattern = torch.rand((1, channels, height, width), generator=gen, device=gen.device)
        mask = torch.full((1, 1, height, width), 0.05)
        return torch.cat([mask, pattern.cpu()], 1).to(device=x.device, dtype=x.dtype)

    def split(self, param: Tensor) -> tuple[Tensor, Tensor]:
        """(mask ``[1, 1, H, W]``, pattern ``[1, C, H, W]``)."""
        return param[:, :1], param[:, 1:]

    def apply(self, param: Tensor, x: Tensor) -> Tensor:
        """Stamp the trigger on every sample."""
        mask, pattern = self.split(param)
        return (1.0 - mask) * x + mask * pattern

    def project(self, param: Tensor, x: Tensor) -> Tensor:
        """Mask and pattern clipped to ``[0, 1]``."""
        return param.clamp(0.0, 1.0)

    def penalty(self, param: Tensor) -> Tensor:
        """``l1_weight * |m|_1`` (a scalar)."""
        return self.l1_weight * param[:, :1].abs().sum()
