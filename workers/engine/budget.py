"""The L-infinity perturbation budget: projection and random start."""

from __future__ import annotations

import torch
from torch import Tensor


class LinfBudget:
    """Perturbations with ``|delta| <= eps`` per pixel that keep ``x + delta`` in ``[0, 1]``."""

    def __init__(self, eps: float) -> None:
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def project(self, delta: Tensor, x: Tensor) -> Tensor:
        """Clip ``delta`` into the eps-ball and so that ``x + delta`` stays a valid image."""
        delta = delta.clamp(-self.eps, self.eps)
        return torch.maximum(torch.minimum(delta, 1.0 - x), -x)

    def random_start(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """A uniform random perturbation in the eps-ball, already projected.

        Sampled on the generator's device, then moved to ``x``'s device.
        """
        noise = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        delta = (noise * 2.0 - 1.0) * self.eps
        return self.project(delta.to(x.device), x)
