"""Structural similarity (SSIM, Wang et al. 2004) and a budget that keeps a floor on it.

:func:`ssim` is differentiable and per sample (on luma, Gaussian window sigma 1.5, the
usual constants for a data range of 1). :class:`SsimFloor` wraps any additive budget: after
the inner projection, a sample whose SSIM to the clean image fell below ``floor`` has its
change scaled down, by bisection on the scale, until it is back above the floor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.budget import Budget
from workers.engine.filters import gaussian_profile
from workers.engine.threshold import luma

_C1, _C2 = 0.01**2, 0.03**2


def ssim(x: Tensor, y: Tensor, sigma: float = 1.5) -> Tensor:
    """Mean SSIM ``[B]`` of the luma of ``x`` and ``y`` ``[B, C, H, W]`` in [0, 1]."""
    a, b = luma(x), luma(y)
    taps = gaussian_profile(sigma, radius=int(3.5 * sigma + 0.5)).to(x.device, x.dtype)
    row, col = taps.view(1, 1, 1, -1), taps.view(1, 1, -1, 1)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(z, row), col)  # valid windows only, as skimage does not pad

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return (num / den).flatten(1).mean(dim=1)


class SsimFloor:
    """``inner`` (e.g. L-inf) plus ``ssim(x + delta, x) >= floor`` per sample.

    The floor is met by scaling the (already projected) change toward zero: ``iterations``
    bisection steps on the scale, keeping the largest scale found that meets the floor.
    """

    def __init__(self, inner: Budget, floor: float, iterations: int = 8) -> None:
        if not 0.0 < floor < 1.0:
            raise ValueError(f"floor must lie in (0, 1), got {floor}")
        self.inner, self.floor, self.iterations = inner, float(floor), int(iterations)

    def project(self, delta: Tensor, x: Tensor) -> Tensor:
        """The inner projection, scaled down where it breaks the floor."""
        delta = self.inner.project(delta, x)
        with torch.no_grad():
            below = ssim(x + delta, x) < self.floor
            if not bool(below.any()):
                return delta
            rows = torch.nonzero(below).flatten()
            d, base = delta[rows], x[rows]
            low = torch.zeros(len(rows), device=x.device, dtype=x.dtype)
            high = torch.ones_like(low)
            for _ in range(self.iterations):
                mid = (low + high) / 2
                ok = ssim(base + d * mid.view(-1, 1, 1, 1), base) >= self.floor
                low, high = torch.where(ok, mid, low), torch.where(ok, high, mid)
            scaled = delta.clone()
            scaled[rows] = d * low.view(-1, 1, 1, 1)
        return scaled

    def random_start(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """The inner budget's random start, projected onto the floor."""
        return self.project(self.inner.random_start(x, gen), x)
