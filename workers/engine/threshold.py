"""Colour clean-ups an OCR pipeline applies before reading: grayscale and binarisation.

Both keep the channel count (the grey or black-and-white value is repeated), so they slot
into any EOT. Binarisation is a hard threshold in the forward pass with the gradient of a
steep sigmoid (straight-through), so the attack sees exactly what the attacker's
threshold leaves while still getting a gradient near the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

from workers.engine.transforms import TransformContext, draw

LUMA = (0.299, 0.587, 0.114)
"""BT.601 luma weights (what Pillow's ``convert("L")`` and OpenCV use)."""


def luma(x: Tensor) -> Tensor:
    """``[B, 1, H, W]`` BT.601 luma of RGB ``[B, 3, H, W]`` (a one-channel batch passes)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


class Grayscale:
    """Luma, repeated over the input's channels."""

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """The grey batch, same shape."""
        return luma(x).expand_as(x)


class Binarise:
    """Luma thresholded to 0/1 at a per-sample level drawn uniformly from ``threshold``.

    ``relative``: the level is a fraction of each image's mean luma (robust to the overall
    brightness, like an adaptive threshold); otherwise an absolute luma in [0, 1].
    ``temperature`` sets the steepness of the sigmoid whose gradient stands in for the step.
    """

    def __init__(
        self,
        threshold: tuple[float, float] = (0.75, 0.9),
        relative: bool = False,
        temperature: float = 0.05,
    ) -> None:
        low, high = float(threshold[0]), float(threshold[1])
        if not 0.0 <= low <= high or (not relative and high > 1.0):
            raise ValueError(f"bad threshold range {threshold}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.threshold = (low, high)
        self.relative, self.temperature = bool(relative), float(temperature)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """0/1 images (ink 0 where luma is below the level), same shape."""
        low, high = self.threshold
        level = (low + (high - low) * draw((x.shape[0],), gen)).to(x.device, x.dtype)
        gray = luma(x)
        level = level.view(-1, 1, 1, 1)
        if self.relative:
            level = level * gray.detach().mean(dim=(1, 2, 3), keepdim=True)
        soft = torch.sigmoid((gray - level) / self.temperature)
        hard = (gray > level).to(x.dtype)
        return (soft + (hard - soft).detach()).expand_as(x)
