"""Simple image transforms: straight-through 8-bit quantisation, Gaussian blur, median smoothing.

All implement the :class:`~workers.engine.transforms.Transform` protocol; blur and median
are deterministic clean-ups a defender (or an attacker's EOT) may apply.

Blur and median are built from shifted slices, not convolutions: PyTorch's depthwise
(grouped) convolutions and ``unfold(...).median`` are slow on CPU, and in an EOT these
filters run on every attack step. The blur is a weighted sum of shifted views of the padded
batch (separable: rows, then columns), the same output as a Gaussian ``conv2d`` with reflect
padding, about 3x faster. The median's value is found without autograd (a 19-exchange
sorting network for 3x3 windows, ``torch.median`` of the stacked views otherwise), the same
output as ``unfold(...).median``; its gradient then flows to the pixel each median came
from, on ties to the first of the tied pixels in raster order (see :class:`MedianSmooth`).
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


def _weighted_sum(views: list[Tensor], taps: Tensor) -> Tensor:
    """``sum(w_i * views[i])`` with the taps normalised to sum 1."""
    weights = (taps / taps.sum()).tolist()
    out = views[0] * weights[0]
    for view, weight in zip(views[1:], weights[1:], strict=True):
        out = out + view * weight
    return out


class GaussianBlur:
    """Separable Gaussian blur of each channel (reflect padding); ``sigma`` in pixels.

    Radius ``ceil(3 sigma)``, cut to ``side - 1`` on a small image (taps renormalised);
    replicate padding instead where the image is one pixel high or wide (nothing to reflect).
    """

    def __init__(self, sigma: float = 1.0) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        self._profile = gaussian_profile(self.sigma)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """The blurred batch, same shape."""
        height, width = x.shape[-2:]
        radius = (self._profile.numel() - 1) // 2
        pad_w, pad_h = min(radius, width - 1), min(radius, height - 1)
        mode = "reflect" if pad_w and pad_h else "replicate"
        padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=mode)
        row_taps = self._profile[radius - pad_w : radius + pad_w + 1]
        col_taps = self._profile[radius - pad_h : radius + pad_h + 1]
        rows = _weighted_sum(
            [padded[..., :, i : i + width] for i in range(len(row_taps))], row_taps
        )
        return _weighted_sum([rows[..., i : i + height, :] for i in range(len(col_taps))], col_taps)


_S, _MAX, _MIN = "sort", "max", "min"
_MEDIAN9: tuple[tuple[int, int, str], ...] = (
    (1, 2, _S), (4, 5, _S), (7, 8, _S), (0, 1, _S), (3, 4, _S), (6, 7, _S), (1, 2, _S),
    (4, 5, _S), (7, 8, _S), (0, 3, _MAX), (5, 8, _MIN), (4, 7, _S), (3, 6, _MAX),
    (1, 4, _MAX), (2, 5, _MIN), (4, 7, _MIN), (4, 2, _S), (6, 4, _MAX), (4, 2, _MIN),
)  # fmt: skip
"""Devillard's ``opt_med9`` exchanges: ``sort`` puts the min in ``a`` and the max in ``b``;
where only one side is read later, ``max`` sets ``b = max(a, b)`` and ``min`` sets
``a = min(a, b)``. The median ends in position 4."""


def _median9(values: list[Tensor]) -> Tensor:
    v = list(values)
    for a, b, op in _MEDIAN9:
        if op == _S:
            v[a], v[b] = torch.minimum(v[a], v[b]), torch.maximum(v[a], v[b])
        elif op == _MAX:
            v[b] = torch.maximum(v[a], v[b])
        else:
            v[a] = torch.minimum(v[a], v[b])
    return v[4]


class MedianSmooth:
    """Median filter over ``size x size`` windows (replicate padding).

    The forward pass is the exact median; the gradient flows to the pixel it came from; on
    ties, to the first of the tied pixels in raster order (``torch.median`` picks one of
    them too, by its own selection order; ties are common where an attack clips pixels at
    0 or 1).

    Why not the window's centre first (the identity's gradient, which ``torch.median``
    gives on flat windows): in the CAPTCHA benchmark it made perturbations transfer worse to
    the held-out OCR model (7-8% solved instead of 2-4%, ``docs/captcha.md``).
    """

    def __init__(self, size: int = 3) -> None:
        if size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd integer, got {size}")
        self.size = int(size)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """The median-filtered batch, same shape."""
        r, (height, width) = self.size // 2, x.shape[-2:]
        padded = F.pad(x, (r, r, r, r), mode="replicate")
        views = [padded[..., i : i + height, j : j + width]
                 for i in range(self.size) for j in range(self.size)]  # fmt: skip
        with torch.no_grad():
            if self.size == 3:
                median = _median9([v.detach() for v in views])
            else:
                median = torch.stack([v.detach() for v in views]).median(dim=0).values
            free = torch.ones_like(median, dtype=torch.bool)
            picks = []
            for view in views:
                hit = free & (view == median)
                picks.append(hit)
                free &= ~hit
        if not x.requires_grad:
            return median
        routed = sum((v - v.detach()) * p for v, p in zip(views, picks, strict=True))
        return median + routed
