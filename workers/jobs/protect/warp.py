"""Differentiable affine warps of image batches in pixel coordinates (face alignment)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine import TransformContext


def invert_affine(m: Tensor) -> Tensor:
    """Invert a batch of 2x3 affine matrices."""
    full = torch.cat([m, m.new_tensor([0.0, 0.0, 1.0]).expand(m.shape[0], 1, 3)], dim=1)
    return torch.linalg.inv(full)[:, :2, :]


def warp_affine(x: Tensor, m: Tensor, size: int) -> Tensor:
    """Warp ``x`` [B,C,H,W] with ``m`` [B,2,3] (source pixel -> output pixel) to size x size.

    Pixel centres sit at integer coordinates (the OpenCV convention), sampling is
    bilinear with zero padding, and gradients flow to ``x``.
    """
    b, _, h, w = x.shape
    inv = invert_affine(m.to(x.dtype))
    coords = torch.arange(size, dtype=x.dtype, device=x.device)
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    ones = torch.ones_like(gx)
    dst = torch.stack([gx, gy, ones], dim=-1).view(1, size * size, 3)
    src = dst @ inv.transpose(1, 2)  # [B, size*size, 2] in source pixels
    norm = src.new_tensor([2.0 / w, 2.0 / h])
    grid = (src + 0.5) * norm - 1.0
    grid = grid.view(b, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def similarity_jitter(
    m: Tensor, size: int, scale: float, shift: float, degrees: float, generator: torch.Generator
) -> Tensor:
    """Compose ``m`` with a random similarity about the crop centre (simulates re-alignment error).

    ``scale`` is the relative scale range (+-), ``shift`` the translation range in output
    pixels (+-), ``degrees`` the rotation range (+-).
    """
    b = m.shape[0]
    r = torch.rand(b, 4, generator=generator).to(m.device, m.dtype) * 2.0 - 1.0
    s = 1.0 + scale * r[:, 0]
    a = torch.deg2rad(degrees * r[:, 1])
    c = (size - 1) / 2.0
    cos, sin = s * torch.cos(a), s * torch.sin(a)
    tx = c - cos * c + sin * c + shift * r[:, 2]
    ty = c - sin * c - cos * c + shift * r[:, 3]
    jitter = torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], dim=1
    )  # [B,2,3]
    full = torch.cat([m, m.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], dim=1)
    return jitter @ full


class AlignWarp:
    """Engine transform: warp each sample into a recognizer's aligned crop.

    The per-sample ``2x3`` matrices (input pixels -> crop pixels) come from the context
    entry ``key``; each is composed with a random similarity jitter (re-detection error).
    """

    def __init__(
        self, key: str, size: int, scale: float = 0.05, shift: float = 3.0, degrees: float = 4.0
    ) -> None:
        self.key, self.size = key, int(size)
        self.scale, self.shift, self.degrees = float(scale), float(shift), float(degrees)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """``[B, C, size, size]`` aligned, jittered crops."""
        m = ctx[self.key].to(device=x.device, dtype=x.dtype)
        m = similarity_jitter(m, self.size, self.scale, self.shift, self.degrees, gen)
        return warp_affine(x, m, self.size)
