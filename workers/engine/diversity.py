"""DI-FGSM input diversity: random resize and pad, back to the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.transforms import TransformContext


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """An integer in ``[low, high)`` (``low`` when the range is empty)."""
    if high <= low:
        return low
    return int(torch.randint(low, high, (1,), generator=generator, device=generator.device).item())


class InputDiversity:
    """Random resize to ``[W, W * resize_rate)``, random zero pad to ``W * resize_rate``,
    then bilinear resize back to ``W``; applied to the whole batch with probability ``prob``.

    Non-square inputs are handled per axis. The output has the input's shape and is
    differentiable with respect to the input.
    """

    def __init__(self, prob: float = 0.7, resize_rate: float = 1.1) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if resize_rate < 1.0:
            raise ValueError(f"resize_rate must be >= 1, got {resize_rate}")
        self.prob = float(prob)
        self.resize_rate = float(resize_rate)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """Transform ``x`` ``[B, C, H, W]`` (identity with probability ``1 - prob``)."""
        coin = torch.rand((1,), generator=gen, device=gen.device).item()
        if coin >= self.prob:
            return x
        height, width = x.shape[-2:]
        out_h, out_w = int(height * self.resize_rate), int(width * self.resize_rate)
        new_h = _randint(height, out_h, gen)
        new_w = _randint(width, out_w, gen)
        resized = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
        top = _randint(0, out_h - new_h + 1, gen)
        left = _randint(0, out_w - new_w + 1, gen)
        padded = F.pad(resized, (left, out_w - new_w - left, top, out_h - new_h - top))
        if (out_h, out_w) == (height, width):
            return padded
        return F.interpolate(padded, size=(height, width), mode="bilinear", align_corners=False)
