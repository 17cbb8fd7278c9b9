"""Structural similarity (SSIM, Wang et al. 2004): a floor budget and a penalty.

:func:`ssim` is differentiable and per sample (on luma, Gaussian window sigma 1.5, the
usual constants for a data range of 1); :func:`ssim_map` is its per-window map.
:class:`SsimFloor` wraps any additive budget: after the inner projection, a sample whose
SSIM to the clean image fell below ``floor`` has its change scaled down, by bisection on
the scale, until it is back above the floor. :class:`SsimLoss` is the attack loop's penalty
form: the mean structural dissimilarity ``1 - SSIM`` over a region.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.budget import Budget
from workers.engine.filters import gaussian_profile
from workers.engine.flip import smooth_fft_size
from workers.engine.threshold import luma

_C1, _C2 = 0.01**2, 0.03**2


def _radius(sigma: float) -> int:
    return int(3.5 * sigma + 0.5)


class _ValidBlur:
    """Separable Gaussian blur over full windows only (skimage's valid region, no padding).

    By FFT: a circular correlation on a grid zero-padded to a size with small prime
    factors, where no valid window wraps; the transfer function is cached per size. On
    CPU it is several times faster, forward and backward, than a thin convolution or
    shifted views.
    """

    def __init__(self, sigma: float) -> None:
        self.taps = gaussian_profile(sigma, radius=_radius(sigma))
        self._transfers: dict[tuple[int, int, torch.dtype, torch.device], Tensor] = {}

    def _transfer(self, ph: int, pw: int, like: Tensor) -> Tensor:
        key = (ph, pw, like.dtype, like.device)
        if key not in self._transfers:
            if len(self._transfers) > 32:
                self._transfers.clear()
            k = self.taps.numel()
            kernel = torch.zeros(ph, pw, dtype=torch.float64)
            kernel[:k, :k] = self.taps[:, None] * self.taps[None, :]
            spectrum = torch.fft.rfft2(kernel).conj()
            self._transfers[key] = spectrum.to(like.device, like.dtype.to_complex())
        return self._transfers[key]

    def __call__(self, z: Tensor) -> Tensor:
        """``z`` ``[B, C, H, W]`` blurred, ``[B, C, H - 2r, W - 2r]``."""
        k = self.taps.numel()
        h, w = z.shape[-2:]
        ph, pw = smooth_fft_size(h), smooth_fft_size(w)
        padded = F.pad(z, (0, pw - w, 0, ph - h))
        spectrum = torch.fft.rfft2(padded) * self._transfer(ph, pw, z)
        return torch.fft.irfft2(spectrum, s=(ph, pw))[..., : h - k + 1, : w - k + 1]


_BLURS: dict[float, _ValidBlur] = {}


def _blur_for(sigma: float) -> _ValidBlur:
    if sigma not in _BLURS:
        _BLURS[sigma] = _ValidBlur(sigma)
    return _BLURS[sigma]


def _combine(mu_a: Tensor, mu_b: Tensor, var_a: Tensor, var_b: Tensor, cov: Tensor) -> Tensor:
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return num / den


def ssim_map(x: Tensor, y: Tensor, sigma: float = 1.5) -> Tensor:
    """SSIM ``[B, 1, H - 2r, W - 2r]`` of the luma of ``x`` and ``y`` ``[B, C, H, W]`` in
    [0, 1], one value per full Gaussian window (radius ``r``; skimage's valid region)."""
    a, b = luma(x), luma(y)
    m = _blur_for(sigma)(torch.cat([a, b, a * a, b * b, a * b], dim=1))
    mu_a, mu_b = m[:, 0:1], m[:, 1:2]
    return _combine(mu_a, mu_b, m[:, 2:3] - mu_a**2, m[:, 3:4] - mu_b**2, m[:, 4:5] - mu_a * mu_b)


def ssim(x: Tensor, y: Tensor, sigma: float = 1.5) -> Tensor:
    """Mean SSIM ``[B]`` of the luma of ``x`` and ``y`` ``[B, C, H, W]`` in [0, 1]."""
    return ssim_map(x, y, sigma).flatten(1).mean(dim=1)


class SsimLoss:
    """Penalty ``[B]``: mean ``1 - SSIM`` of ``test`` against ``reference`` over a region.

    ``weight`` ``[B or 1, 1, H, W]`` (e.g. the face mask) weights each window by its value
    at the window's centre; without it every window counts. Images smaller than a window
    cost nothing. The reference side (its luma, local means and variances) is kept from the
    last call: an attack compares every step against the same clean image.
    """

    def __init__(self, sigma: float = 1.5) -> None:
        self.sigma = float(sigma)
        self._blur = _blur_for(self.sigma)
        self._cached: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def _reference_side(self, reference: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Luma, local mean and local variance of ``reference``, without gradient."""
        if self._cached is not None:
            seen, b, mu_b, var_b = self._cached
            if seen.shape == reference.shape and torch.equal(seen, reference):
                return b, mu_b, var_b
        with torch.no_grad():
            b = luma(reference)
            m = self._blur(torch.cat([b, b * b], dim=1))
            mu_b, var_b = m[:, 0:1], m[:, 1:2] - m[:, 0:1] ** 2
        self._cached = (reference.detach().clone(), b, mu_b, var_b)
        return b, mu_b, var_b

    def __call__(self, test: Tensor, reference: Tensor, weight: Tensor | None = None) -> Tensor:
        """The weighted mean dissimilarity of each sample."""
        r = _radius(self.sigma)
        if min(test.shape[-2:]) <= 2 * r:
            return test.new_zeros(test.shape[0])
        b, mu_b, var_b = self._reference_side(reference)
        a = luma(test)
        m = self._blur(torch.cat([a, a * a, a * b], dim=1))
        mu_a = m[:, 0:1]
        similar = _combine(mu_a, mu_b, m[:, 1:2] - mu_a**2, var_b, m[:, 2:3] - mu_a * mu_b)
        dissimilar = 1.0 - similar
        if weight is None:
            return dissimilar.flatten(1).mean(1)
        w = weight[..., r : weight.shape[-2] - r, r : weight.shape[-1] - r].to(test.dtype)
        w = w.expand_as(dissimilar)
        return (dissimilar * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1e-12)


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
