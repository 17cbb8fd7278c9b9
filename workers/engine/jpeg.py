"""A differentiable approximation of JPEG compression (IJG tables, 4:2:0 chroma)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.transforms import TransformContext

# ITU-T T.81 Annex K tables, as used by libjpeg (IJG) at quality 50.
_LUMA_TABLE = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_CHROMA_TABLE = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
]

# JFIF RGB <-> YCbCr (full range); chroma is kept centred, without the +128 offset.
_RGB_TO_YCBCR = [
    [0.299, 0.587, 0.114],
    [-0.168735892, -0.331264108, 0.5],
    [0.5, -0.418687589, -0.081312411],
]
_YCBCR_TO_RGB = [
    [1.0, 0.0, 1.402],
    [1.0, -0.344136286, -0.714136286],
    [1.0, 1.772, 0.0],
]


def quality_scaled_table(base: Tensor, quality: Tensor) -> Tensor:
    """IJG quality scaling of a base table ``[8, 8]`` for qualities ``[B]`` -> ``[B, 8, 8]``.

    ``scale = 5000 / q`` below 50, ``200 - 2 q`` otherwise; entries
    ``floor((base * scale + 50) / 100)`` clamped to the baseline range ``[1, 255]``.
    """
    q = quality.clamp(1, 100).floor()
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    table = torch.floor((base[None] * scale[:, None, None] + 50.0) / 100.0)
    return table.clamp(1.0, 255.0)


def dct_matrix(size: int = 8) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (float64): ``D @ block @ D.T`` is the 2-D DCT."""
    k = torch.arange(size, dtype=torch.float64)[:, None]
    n = torch.arange(size, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi * (2.0 * n + 1.0) * k / (2.0 * size)) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix


def soft_round(x: Tensor) -> Tensor:
    """Shin & Song's differentiable rounding: ``round(x) + (x - round(x)) ** 3``."""
    rounded = torch.round(x)
    return rounded + (x - rounded) ** 3


def _to_blocks(plane: Tensor) -> Tensor:
    """``[B, H, W]`` -> ``[B, H/8, W/8, 8, 8]``."""
    b, h, w = plane.shape
    return plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _from_blocks(blocks: Tensor) -> Tensor:
    """``[B, H/8, W/8, 8, 8]`` -> ``[B, H, W]``."""
    b, nh, nw = blocks.shape[:3]
    return blocks.permute(0, 1, 3, 2, 4).reshape(b, nh * 8, nw * 8)


class DifferentiableJpeg:
    """Differentiable JPEG round trip of an RGB batch ``[B, 3, H, W]`` in ``[0, 1]``.

    As a transform it draws each sample's quality uniformly from the integers of
    ``quality`` (inclusive); :meth:`compress` takes explicit qualities.

    RGB -> YCbCr, 4:2:0 chroma (2x2 average pool, bilinear upsampling like libjpeg's
    "fancy" upsampling), 8x8 DCT, quantisation with the IJG tables at each sample's
    quality, soft rounding, dequantisation, inverse DCT, back to RGB, clamp to ``[0, 1]``.
    Sides are padded (edge replicate) to multiples of 16 and cropped back.
    """

    def __init__(self, quality: tuple[int, int] = (50, 95)) -> None:
        low, high = quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"need 1 <= low <= high <= 100, got {quality}")
        self.quality = (int(low), int(high))
        self._dct = dct_matrix(8)
        self._luma = torch.tensor(_LUMA_TABLE, dtype=torch.float64)
        self._chroma = torch.tensor(_CHROMA_TABLE, dtype=torch.float64)
        self._rgb_to_ycbcr = torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64)
        self._ycbcr_to_rgb = torch.tensor(_YCBCR_TO_RGB, dtype=torch.float64)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """Compress each sample at a random quality from the configured range."""
        low, high = self.quality
        q = torch.randint(low, high + 1, (x.shape[0],), generator=gen, device=gen.device)
        return self.compress(x, q.float())

    def compress(self, x: Tensor, quality: Tensor | float) -> Tensor:
        """Compress and decompress ``x`` at ``quality`` (a number or a ``[B]`` tensor, 1..100)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [B, 3, H, W], got {tuple(x.shape)}")
        batch, _, height, width = x.shape
        device, dtype = x.device, x.dtype
        q = torch.as_tensor(quality, device=device, dtype=torch.float64).flatten()
        q = q.expand(batch) if q.numel() == 1 else q
        if q.shape != (batch,):
            raise ValueError(f"quality must be a number or a [{batch}] tensor")
        luma_q = quality_scaled_table(self._luma.to(device), q).to(dtype)
        chroma_q = quality_scaled_table(self._chroma.to(device), q).to(dtype)

        pad_h, pad_w = -height % 16, -width % 16
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        to_ycbcr = self._rgb_to_ycbcr.to(device=device, dtype=dtype)
        ycbcr = torch.einsum("ij,bjhw->bihw", to_ycbcr, x * 255.0)
        luma = ycbcr[:, 0]
        chroma = F.avg_pool2d(ycbcr[:, 1:], kernel_size=2)  # centred Cb, Cr (offset 128 off)

        luma = self._quantise(luma - 128.0, luma_q) + 128.0
        cb = self._quantise(chroma[:, 0], chroma_q)
        cr = self._quantise(chroma[:, 1], chroma_q)
        chroma = torch.stack([cb, cr], dim=1)
        chroma = F.interpolate(chroma, scale_factor=2.0, mode="bilinear", align_corners=False)

        ycbcr = torch.cat([luma[:, None], chroma], dim=1)
        to_rgb = self._ycbcr_to_rgb.to(device=device, dtype=dtype)
        rgb = torch.einsum("ij,bjhw->bihw", to_rgb, ycbcr) / 255.0
        return rgb[:, :, :height, :width].clamp(0.0, 1.0)

    def _quantise(self, plane: Tensor, table: Tensor) -> Tensor:
        """DCT, quantise, soft-round, dequantise and inverse DCT a level-shifted plane."""
        dct = self._dct.to(device=plane.device, dtype=plane.dtype)
        blocks = _to_blocks(plane)
        coeffs = dct @ blocks @ dct.T
        table = table[:, None, None]
        coeffs = soft_round(coeffs / table) * table
        return _from_blocks(dct.T @ coeffs @ dct)
