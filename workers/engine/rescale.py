"""Random down-and-up rescaling, a differentiable stand-in for resize on upload."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.transforms import TransformContext


class RandomRescale:
    """Down-scale the batch by a factor drawn from ``[min_scale, max_scale]`` (bilinear,
    antialiased), then back up to the original size (bilinear). Differentiable.
    """

    def __init__(self, min_scale: float = 0.5, max_scale: float = 1.0) -> None:
        if not 0.0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """Rescale ``x`` ``[B, C, H, W]``; one factor for the whole batch."""
        u = torch.rand((1,), generator=gen, device=gen.device, dtype=torch.float64)
        scale = self.min_scale + (self.max_scale - self.min_scale) * float(u.item())
        return self.at_scale(x, scale)

    @staticmethod
    def at_scale(x: Tensor, scale: float) -> Tensor:
        """Rescale ``x`` by the given factor and back (deterministic)."""
        height, width = x.shape[-2:]
        small = (max(1, round(height * scale)), max(1, round(width * scale)))
        if small == (height, width):
            return x
        down = F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=True)
        return F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False)
