"""Per-sample scale search: the smallest multiple of a perturbation that still does its job.

An attack that stops at a margin leaves each sample's ``delta`` wherever the last step
put it, often larger than needed. :class:`ScaleSearch` then shrinks each sample's
``delta`` by ``factor`` for as long as ``holds(x + s * delta)`` stays true (e.g. the
objective is still done under EOT), reverting a shrink that breaks it and retrying once
with the gentler ``fine_factor``. Scaling by ``s <= 1`` keeps ``delta`` inside any
budget that is convex and contains 0 (L-inf, L2, perceptual) and ``x + s * delta``
inside ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Holds = Callable[[Tensor, Tensor], Tensor]
"""``(x_adv [b, ...], index [b]) -> [b] bool``: does the perturbed sample still qualify."""
OnShrink = Callable[[int, Tensor], None]
"""Called after each iteration with its number (from 0) and the samples still shrinking."""


@dataclass
class ScaleResult:
    """The outcome of :meth:`ScaleSearch.run` for a batch of ``B`` samples."""

    delta: Tensor
    """``[B, ...]`` the scaled perturbations."""
    scale: Tensor
    """``[B]`` the scale kept for each sample (1: not shrunk)."""
    iterations: int
    """Checks run (each one forward pass over the samples still shrinking)."""


@dataclass(frozen=True)
class ScaleSearch:
    """Shrink ``delta`` per sample by ``factor`` while ``holds``; up to ``iterations`` checks."""

    factor: float = 0.7
    iterations: int = 60
    fine_factor: float | None = 0.85
    """After a failed shrink, try once more with this gentler factor (None: stop)."""
    min_scale: float = 0.0
    """Never shrink below this scale."""

    def __post_init__(self) -> None:
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"factor must lie in (0, 1), got {self.factor}")
        if self.fine_factor is not None and not self.factor < self.fine_factor < 1.0:
            raise ValueError(f"fine_factor must lie in (factor, 1), got {self.fine_factor}")

    def run(
        self,
        x: Tensor,
        delta: Tensor,
        holds: Holds,
        eligible: Tensor | None = None,
        on_step: OnShrink | None = None,
    ) -> ScaleResult:
        """Shrink the ``eligible`` samples (``[B]`` bool, default all) of ``delta``."""
        batch, device = x.shape[0], x.device
        scale = torch.ones(batch, dtype=x.dtype, device=device)
        factor = torch.full((batch,), self.factor, dtype=x.dtype, device=device)
        live = torch.ones(batch, dtype=torch.bool, device=device)
        if eligible is not None:
            live &= eligible.to(device=device, dtype=torch.bool)
        shape = (-1, *([1] * (x.dim() - 1)))
        count = 0
        for count in range(1, self.iterations + 1):
            index = live.nonzero().flatten()
            if index.numel() == 0:
                count -= 1
                break
            trial = (scale[index] * factor[index]).clamp(min=self.min_scale)
            with torch.no_grad():
                ok = holds(x[index] + delta[index] * trial.view(shape), index).to(device)
            scale[index[ok]] = trial[ok]
            failed = index[~ok]
            live[failed] = False
            if self.fine_factor is not None:
                retry = failed[factor[failed] < self.fine_factor]
                live[retry] = True
                factor[retry] = self.fine_factor
            live &= scale > self.min_scale
            if on_step is not None:
                on_step(count - 1, live.nonzero().flatten())
        return ScaleResult(delta=delta * scale.view(shape), scale=scale, iterations=count)
