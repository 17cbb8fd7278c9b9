"""A perceptual perturbation budget: luma/chroma limits scaled by a visibility mask.

The L-inf budget gives every channel of every pixel the same room, so sign steps spread
coloured noise evenly over flat skin. Here ``delta`` is limited in YCbCr (BT.601, full
range, as JPEG): ``|dY| <= eps_luma * m`` and ``|dCb|, |dCr| <= eps_chroma * m``, where
``m`` is a per-pixel visibility mask of the clean image. Photos whose pixels are all grey
(R == G == B) get no chroma room at all, so their perturbation stays grey.

The mask is the pixel-domain just-noticeable-difference model of Chou & Li (1995):
luminance adaptation (more room in dark areas, where the eye resolves fewer grey levels)
plus contrast masking from the largest of four directional gradients (more room on hair,
brows, beard and edges), combined as in Yang et al.'s NAMM (2005). It needs only the
clean image and two small convolutions, and is the model most pixel-domain JND work
extends. It is normalised to 1 on flat mid-grey and clipped to ``gain``.

``band_pass`` limits the spatial frequencies of a perturbation or a gradient (difference
of Gaussians): the finest detail does not survive JPEG, blur or a median filter, and
smooth blobs are what the eye sees most easily.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# BT.601 full-range RGB -> YCbCr (rows: Y, Cb, Cr), as JPEG uses.
_RGB_TO_YCC = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ],
    dtype=torch.float64,
)
_YCC_TO_RGB = torch.linalg.inv(_RGB_TO_YCC)

# Chou & Li's directional high-pass operators (5x5, each side weights sum to 16).
_GRADIENT_OPERATORS = (
    torch.tensor(
        [
            [
                [0, 0, 0, 0, 0],
                [1, 3, 8, 3, 1],
                [0, 0, 0, 0, 0],
                [-1, -3, -8, -3, -1],
                [0, 0, 0, 0, 0],
            ],
            [
                [0, 0, 1, 0, 0],
                [0, 8, 3, 0, 0],
                [1, 3, 0, -3, -1],
                [0, 0, -3, -8, 0],
                [0, 0, -1, 0, 0],
            ],
            [
                [0, 0, 1, 0, 0],
                [0, 0, 3, 8, 0],
                [-1, -3, 0, 3, 1],
                [0, -8, -3, 0, 0],
                [0, 0, -1, 0, 0],
            ],
            [
                [0, 1, 0, -1, 0],
                [0, 3, 0, -3, 0],
                [0, 8, 0, -8, 0],
                [0, 3, 0, -3, 0],
                [0, 1, 0, -1, 0],
            ],
        ],
        dtype=torch.float64,
    )
    / 16.0
)
# Chou & Li's background-luminance operator (5x5 weighted mean).
_BACKGROUND = (
    torch.tensor(
        [[1, 1, 1, 1, 1], [1, 2, 2, 2, 1], [1, 2, 0, 2, 1], [1, 2, 2, 2, 1], [1, 1, 1, 1, 1]],
        dtype=torch.float64,
    )
    / 32.0
)
_NAMM_OVERLAP = 0.3  # Yang et al.: the two masking effects overlap
_FLAT_MID_GREY_JND = 3.0  # JND (8-bit levels) of a flat region at background 127


def _mix(t: Tensor, matrix: Tensor) -> Tensor:
    """Apply a 3x3 colour matrix to ``[B, 3, H, W]``."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(device=t.device, dtype=t.dtype), t)


def rgb_to_ycbcr(t: Tensor) -> Tensor:
    """BT.601 full-range YCbCr of an RGB tensor (a linear map, no offsets: for deltas too)."""
    return _mix(t, _RGB_TO_YCC)


def ycbcr_to_rgb(t: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    return _mix(t, _YCC_TO_RGB)


def is_grey(x: Tensor, tol: float = 2.0 / 255) -> Tensor:
    """``[B]`` bool: every pixel has R == G == B within ``tol``.

    Two levels of slack: a grey photo saved as a colour JPEG decodes with small differences.
    """
    spread = x.amax(1) - x.amin(1)
    return spread.flatten(1).amax(1) <= tol


def _conv_luma(luma: Tensor, kernels: Tensor) -> Tensor:
    weight = kernels.to(device=luma.device, dtype=luma.dtype).unsqueeze(1)
    return F.conv2d(F.pad(luma, (2, 2, 2, 2), mode="replicate"), weight)


def jnd_levels(x: Tensor) -> Tensor:
    """``[B, 1, H, W]`` Chou-Li/NAMM just-noticeable luma change, in 8-bit levels."""
    luma = rgb_to_ycbcr(x)[:, :1] * 255.0
    bg = _conv_luma(luma, _BACKGROUND.unsqueeze(0))
    mg = _conv_luma(luma, _GRADIENT_OPERATORS).abs().amax(1, keepdim=True)
    dark = 17.0 * (1.0 - torch.sqrt(bg.clamp(min=0.0) / 127.0)) + 3.0
    bright = 3.0 / 128.0 * (bg - 127.0) + 3.0
    adaptation = torch.where(bg <= 127.0, dark, bright)
    contrast = (mg * (0.0001 * bg + 0.115) + (0.5 - 0.01 * bg)).clamp(min=0.0)
    return adaptation + contrast - _NAMM_OVERLAP * torch.minimum(adaptation, contrast)


def visibility_mask(x: Tensor, gain: tuple[float, float] = (0.5, 3.0)) -> Tensor:
    """``[B, 1, H, W]`` budget scale: the JND relative to flat mid-grey, clipped to ``gain``."""
    with torch.no_grad():
        return (jnd_levels(x) / _FLAT_MID_GREY_JND).clamp(*gain)


def _gaussian_response(n: int, sigma: float, t: Tensor, real: bool) -> Tensor:
    """Transfer function of a Gaussian blur of ``sigma`` pixels at the FFT frequencies."""
    freq = (torch.fft.rfftfreq if real else torch.fft.fftfreq)(n, device=t.device, dtype=t.dtype)
    return torch.exp(-2.0 * (math.pi * sigma * freq) ** 2)


def band_pass(t: Tensor, fine_sigma: float = 0.0, coarse_sigma: float = 0.0) -> Tensor:
    """Keep the spatial frequencies of ``t`` ``[B, C, H, W]`` between two Gaussian scales.

    ``fine_sigma > 0`` (pixels) removes detail finer than it (low-pass); ``coarse_sigma > 0``
    removes structure coarser than it (high-pass); both give a difference of Gaussians.
    Computed with one FFT over the reflect-padded tensor; linear and differentiable, so it
    band-limits a perturbation or a gradient alike.
    """
    if fine_sigma < 0 or coarse_sigma < 0:
        raise ValueError("sigmas must be >= 0")
    if coarse_sigma and fine_sigma and coarse_sigma <= fine_sigma:
        raise ValueError(f"coarse_sigma {coarse_sigma} must exceed fine_sigma {fine_sigma}")
    if not fine_sigma and not coarse_sigma:
        return t
    h, w = t.shape[-2:]
    pad = min(math.ceil(3.0 * max(fine_sigma, coarse_sigma)), h - 1, w - 1)
    padded = F.pad(t, (pad, pad, pad, pad), mode="reflect") if pad else t
    ph, pw = padded.shape[-2:]

    def response(sigma: float) -> Tensor:
        return (
            _gaussian_response(ph, sigma, t, False)[:, None]
            * _gaussian_response(pw, sigma, t, True)[None, :]
        )

    keep = response(fine_sigma) if fine_sigma else torch.ones(1, device=t.device, dtype=t.dtype)
    if coarse_sigma:
        keep = keep - response(coarse_sigma)
    out = torch.fft.irfft2(torch.fft.rfft2(padded) * keep, s=(ph, pw))
    return out[..., pad : pad + h, pad : pad + w]


class PerceptualBudget:
    """Luma/chroma limits scaled per pixel by the clean image's visibility mask.

    Same interface as :class:`workers.engine.budget.LinfBudget`; ``x + delta`` stays in
    ``[0, 1]`` and a grey image's ``delta`` stays grey.
    """

    def __init__(
        self,
        eps_luma: float,
        eps_chroma: float,
        texture: bool = True,
        gain: tuple[float, float] = (0.5, 3.0),
    ) -> None:
        if eps_luma < 0 or eps_chroma < 0:
            raise ValueError(f"eps must be >= 0, got {eps_luma}, {eps_chroma}")
        if not 0 < gain[0] <= gain[1]:
            raise ValueError(f"gain must satisfy 0 < low <= high, got {gain}")
        self.eps_luma = float(eps_luma)
        self.eps_chroma = float(eps_chroma)
        self.texture = texture
        self.gain = gain
        self._cached: tuple[Tensor, Tensor] | None = None  # (clean image, its limits)

    def limits(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` per-pixel limits on ``|dY|, |dCb|, |dCr|`` for clean image ``x``.

        The limits of the last image are kept: an attack projects onto the same image every
        step, and an exact comparison costs far less than the mask.
        """
        if self._cached is not None:
            seen, lim = self._cached
            if seen.shape == x.shape and seen.device == x.device and torch.equal(seen, x):
                return lim
        lim = self._limits(x)
        self._cached = (x.detach().clone(), lim)
        return lim

    def _limits(self, x: Tensor) -> Tensor:
        scale = visibility_mask(x, self.gain) if self.texture else torch.ones_like(x[:, :1])
        chroma = torch.where(is_grey(x).view(-1, 1, 1, 1), 0.0, self.eps_chroma)
        eps = torch.cat([torch.full_like(chroma, self.eps_luma), chroma, chroma], 1)
        return (eps.to(x.dtype) * scale).detach()

    def project(self, delta: Tensor, x: Tensor) -> Tensor:
        """Clip ``delta`` into the luma/chroma limits so that ``x + delta`` is a valid image."""
        lim = self.limits(x)

        def clamp_ycc(d: Tensor) -> Tensor:
            ycc = rgb_to_ycbcr(d)
            return ycbcr_to_rgb(torch.maximum(torch.minimum(ycc, lim), -lim))

        d = clamp_ycc(delta)
        d = clamp_ycc(torch.maximum(torch.minimum(d, 1.0 - x), -x))
        grey = is_grey(x).view(-1, 1, 1, 1)
        d = torch.where(grey, d.mean(1, keepdim=True).expand_as(d), d)  # exactly R = G = B
        # the second clamp may leave [0, 1] again: shrink each pixel's delta until it fits
        room = torch.where(d > 0, (1.0 - x) / d.clamp(min=1e-12), -x / d.clamp(max=-1e-12))
        room = torch.where(d == 0, torch.ones_like(room), room)
        return d * room.amin(1, keepdim=True).clamp(0.0, 1.0)

    def random_start(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """A uniform random perturbation within the limits, already projected."""
        noise = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        ycc = (noise.to(x.device) * 2.0 - 1.0) * self.limits(x)
        return self.project(ycbcr_to_rgb(ycc), x)
