"""Translation-invariant (TI) gradient smoothing with a Gaussian kernel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel(kernel_size: int, sigma: float) -> Tensor:
    """A normalised 2-D Gaussian ``[kernel_size, kernel_size]`` (float64, CPU)."""
    coords = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2.0
    profile = torch.exp(-(coords**2) / (2.0 * sigma**2))
    kernel = profile[:, None] * profile[None, :]
    return kernel / kernel.sum()


class GradientSmoothing:
    """TI-FGSM: convolve each channel of the gradient with a Gaussian (zero padding)."""

    def __init__(self, kernel_size: int = 7, sigma: float = 3.0) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)
        self._kernel = gaussian_kernel(self.kernel_size, self.sigma)

    def __call__(self, grad: Tensor) -> Tensor:
        """Smooth ``grad`` ``[B, C, H, W]``; the output has the same shape."""
        channels = grad.shape[1]
        weight = self._kernel.to(device=grad.device, dtype=grad.dtype)
        weight = weight.expand(channels, 1, self.kernel_size, self.kernel_size)
        return F.conv2d(grad, weight, padding=self.kernel_size // 2, groups=channels)
