"""Simple image transforms: straight-through 8-bit quantisation, Gaussian blur, median smoothing.

All implement the :class:`~workers.engine.transforms.Transform` protocol; blur and median
are deterministic clean-ups a defender (or an attacker's EOT) may apply.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.transforms import TransformContext


class Quantise8bit:
    """Round to 8-bit levels in the forward pass, identity gradient (straight-through), so
    that what is optimised is exactly what an 8-bit file stores. ``bits < 8`` simulates a
    colour-depth reduction (an attacker's clean-up, e.g. 5 bits = 32 levels).
    """

    def __init__(self, bits: int = 8) -> None:
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must lie in 1..16, got {bits}")
        self.levels = float(2**bits - 1)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """``round(x * L) / L`` (``L = 2**bits - 1``) with the gradient of the identity."""
        return x + (torch.round(x * self.levels) / self.levels - x).detach()


def gaussian_profile(sigma: float, radius: int | None = None) -> Tensor:
    """A normalised 1-D Gaussian of ``2 * radius + 1`` taps (float64; radius 3 sigma)."""
    radius = math.ceil(3.0 * sigma) if radius is None else radius
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    profile = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return profile / profile.sum()


class GaussianBlur:
    """Separable Gaussian blur of each channel (reflect padding); ``sigma`` in pixels."""

    def __init__(self, sigma: float = 1.0) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        self._profile = gaussian_profile(self.sigma)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """The blurred batch, same shape."""
        channels = x.shape[1]
        taps = self._profile.to(device=x.device, dtype=x.dtype)
        radius = (taps.numel() - 1) // 2
        pad_w = min(radius, x.shape[-1] - 1)
        pad_h = min(radius, x.shape[-2] - 1)
        out = F.pad(
            x, (pad_w, pad_w, pad_h, pad_h), mode="reflect" if pad_w and pad_h else "replicate"
        )
        row = taps[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1).expand(channels, 1, 1, -1)
        col = taps[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1).expand(channels, 1, -1, 1)
        out = F.conv2d(out, row / row.sum(dim=-1, keepdim=True), groups=channels)
        return F.conv2d(out, col / col.sum(dim=-2, keepdim=True), groups=channels)


class MedianSmooth:
    """Median filter over ``size x size`` windows (replicate padding).

    The forward pass is the exact median; the gradient flows to the pixel each median
    came from (``torch.median``'s subgradient).
    """

    def __init__(self, size: int = 3) -> None:
        if size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd integer, got {size}")
        self.size = int(size)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """The median-filtered batch, same shape."""
        r = self.size // 2
        padded = F.pad(x, (r, r, r, r), mode="replicate")
        windows = padded.unfold(2, self.size, 1).unfold(3, self.size, 1)
        return windows.flatten(-2).median(dim=-1).values
