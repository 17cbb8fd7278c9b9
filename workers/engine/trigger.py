"""Per-group universal triggers and a never-finished objective (trigger reverse-engineering).

:class:`GroupTriggerBudget` is :class:`~workers.engine.budget.TriggerBudget` for ``G``
groups at once: each group (e.g. each candidate target class) owns a mask ``[1, H, W]``
and a pattern ``[C, H, W]``, applied to its own rows of the batch, so ``G`` Neural-Cleanse
style searches share one forward pass. The parameter is one row ``[1, G * (1 + C), H, W]``
so that per-sample optimiser state (Adam) treats it as the single shared parameter it is.
:class:`Persistent` keeps an objective from reporting ``done`` (a trigger search should
keep shrinking its mask after the target is reached).
"""

from __future__ import annotations

import torch
from torch import Tensor

from workers.engine.objectives import Objective, ObjectiveValue
from workers.engine.transforms import TransformContext


class GroupTriggerBudget:
    """``x'_i = (1 - m_g) x_i + m_g p_g`` for the group ``g = group[i]`` of each row.

    ``penalty`` is ``l1_weight * sum_g |m_g|_1``; ``initial`` is a faint mask and a random
    pattern per group.
    """

    kind = "group_trigger"

    def __init__(self, group: Tensor, groups: int | None = None, l1_weight: float = 1e-3) -> None:
        if l1_weight < 0:
            raise ValueError(f"l1_weight must be >= 0, got {l1_weight}")
        self.group = group.long()
        self.groups = int(groups if groups is not None else int(self.group.max()) + 1)
        self.l1_weight = float(l1_weight)

    def split(self, param: Tensor) -> tuple[Tensor, Tensor]:
        """(masks ``[G, 1, H, W]``, patterns ``[G, C, H, W]``)."""
        per = param.view(self.groups, -1, *param.shape[-2:])
        return per[:, :1], per[:, 1:]

    def initial(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """Masks at 0.05 and uniform random patterns, as one row."""
        _, channels, height, width = x.shape
        pattern = torch.rand(
            (self.groups, channels, height, width), generator=gen, device=gen.device
        )
        mask = torch.full((self.groups, 1, height, width), 0.05)
        param = torch.cat([mask, pattern.cpu()], 1).view(1, -1, height, width)
        return param.to(device=x.device, dtype=x.dtype)

    def apply(self, param: Tensor, x: Tensor) -> Tensor:
        """Stamp each row's group trigger."""
        masks, patterns = self.split(param)
        group = self.group.to(x.device)
        mask, pattern = masks[group], patterns[group]
        return (1.0 - mask) * x + mask * pattern

    def project(self, param: Tensor, x: Tensor) -> Tensor:
        """Masks and patterns clipped to ``[0, 1]``."""
        return param.clamp(0.0, 1.0)

    def penalty(self, param: Tensor) -> Tensor:
        """``l1_weight`` times the summed L1 norm of the masks."""
        return self.l1_weight * self.split(param)[0].abs().sum()

    def mask_norms(self, param: Tensor) -> Tensor:
        """``[G]`` L1 norm of each group's mask."""
        return self.split(param)[0].detach().abs().flatten(1).sum(1)

    def compact(self, param: Tensor, pixels: int) -> Tensor:
        """``param`` with each group's mask cut to its ``pixels`` largest values, set to 1
        (the rest 0): the trigger as a small hard stamp, patterns unchanged."""
        masks, patterns = self.split(param.detach())
        flat = masks.flatten(1)
        keep = torch.zeros_like(flat).scatter_(
            1, flat.topk(min(pixels, flat.shape[1])).indices, 1.0
        )
        return torch.cat([keep.view_as(masks), patterns], 1).view_as(param)


class Persistent:
    """``objective`` with ``done`` always False: the attack runs all its steps."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """The objective's loss; never done."""
        value = self.objective(x, ctx, gen)
        return ObjectiveValue(value.loss, torch.zeros_like(value.done))
