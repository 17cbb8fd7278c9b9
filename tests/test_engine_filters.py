"""The engine's filters (``workers/engine/filters.py``): 8-bit quantisation, and the Gaussian
blur and median built from shifted slices, each checked against a reference computed here
the plain way (``conv2d`` with the Gaussian kernel, ``unfold(...).median``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine import GaussianBlur, MedianSmooth, Quantise8bit, TransformContext


def _grads(transform: object, x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """The output and the gradient of ``sum(weights * transform(x))``."""
    x = x.clone().requires_grad_(True)
    out = transform(x, TransformContext.of_batch(len(x)), torch.Generator())  # type: ignore[operator]
    (out * weights).sum().backward()
    assert x.grad is not None
    return out.detach(), x.grad


def _reference_blur(x: Tensor, sigma: float) -> Tensor:
    """Depthwise ``conv2d`` with the 2-D Gaussian kernel (radius ``ceil(3 sigma)``, cut to
    the image and renormalised per axis), reflect padding (replicate on a 1-pixel side)."""
    radius = math.ceil(3.0 * sigma)
    pad_h, pad_w = min(radius, x.shape[-2] - 1), min(radius, x.shape[-1] - 1)

    def taps(pad: int) -> Tensor:
        k = torch.arange(-pad, pad + 1, dtype=torch.float64)
        g = torch.exp(-(k**2) / (2.0 * sigma**2))
        return g / g.sum()

    kernel = torch.outer(taps(pad_h), taps(pad_w)).to(x.dtype)
    channels = x.shape[1]
    mode = "reflect" if pad_h and pad_w else "replicate"
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=mode)
    return F.conv2d(padded, kernel.expand(channels, 1, -1, -1), groups=channels)


def _windows(x: Tensor, size: int) -> Tensor:
    """``[B, C, H, W, size * size]``: each pixel's window (replicate padding), raster order."""
    r = size // 2
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    return padded.unfold(2, size, 1).unfold(3, size, 1).flatten(-2)


def _reference_routing(x: Tensor, size: int, weights: Tensor) -> Tensor:
    """The gradient of ``sum(weights * median)`` when each output's gradient goes to the
    first pixel of its window (raster order) that holds the median."""
    windows = _windows(x, size)
    median = windows.median(dim=-1).values
    first = (windows == median.unsqueeze(-1)).int().argmax(dim=-1)  # first of the maxima
    b, c, i, j = torch.meshgrid(*(torch.arange(n) for n in x.shape), indexing="ij")
    r, (height, width) = size // 2, x.shape[-2:]
    rows = (i + first // size - r).clamp(0, height - 1)  # replicate padding: the edge pixel
    cols = (j + first % size - r).clamp(0, width - 1)
    grad = torch.zeros_like(x)
    grad.index_put_((b, c, rows, cols), weights, accumulate=True)
    return grad


def test_quantise_blur_median() -> None:
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 3, 8, 8, generator=gen) * 0.6 + 0.2).requires_grad_(True)
    ctx = TransformContext.of_batch(4)
    q = Quantise8bit()(x, ctx, gen)
    assert torch.equal(q * 255, torch.round(x * 255).detach())
    q.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones_like(x))
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4] = 1.0
    blurred = GaussianBlur(1.0)(img, TransformContext.of_batch(1), gen)
    assert torch.isclose(blurred.sum(), torch.tensor(1.0), atol=1e-5)
    assert blurred[0, 0, 4, 4] < 0.2 and blurred[0, 0, 4, 5] > 0.05
    assert MedianSmooth(3)(img, TransformContext.of_batch(1), gen).abs().sum() == 0  # speck gone
    flat = torch.full((1, 3, 6, 6), 0.3)
    assert torch.allclose(MedianSmooth(3)(flat, TransformContext.of_batch(1), gen), flat)


def test_filters_reject_bad_parameters() -> None:
    for bad in (lambda: GaussianBlur(0.0), lambda: MedianSmooth(4), lambda: Quantise8bit(0)):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("shape", [(2, 3, 20, 30), (1, 3, 5, 3), (2, 2, 1, 9)])
@pytest.mark.parametrize("sigma", [0.8, 2.0])
def test_blur_matches_a_gaussian_convolution(shape: tuple[int, ...], sigma: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
    out, grad = _grads(GaussianBlur(sigma), x, w)
    ref, ref_grad = _grads(lambda v, ctx, g: _reference_blur(v, sigma), x, w)
    assert out.shape == x.shape
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(grad, ref_grad, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_median_matches_unfold_median(size: int) -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.rand((2, 3, 12, 17), generator=gen), torch.rand((2, 3, 12, 17), generator=gen)
    ref = _windows(x, size).median(dim=-1).values
    out, grad = _grads(MedianSmooth(size), x, w)
    assert torch.equal(out, ref)
    with torch.no_grad():
        assert torch.equal(MedianSmooth(size)(x, TransformContext.of_batch(2), gen), ref)
    # no ties: each output's gradient goes to the pixel its median came from, as torch's does
    _, torch_grad = _grads(lambda v, ctx, g: _windows(v, size).median(dim=-1).values, x, w)
    assert torch.allclose(grad, torch_grad, atol=1e-6)
    assert torch.allclose(grad, _reference_routing(x, size, w), atol=1e-6)


@pytest.mark.parametrize("size", [3, 5])
def test_median_routes_ties_to_the_first_tied_pixel(size: int) -> None:
    gen = torch.Generator().manual_seed(2)
    flat = torch.round(torch.rand((2, 3, 12, 17), generator=gen) * 3) / 3  # ties everywhere
    w = torch.rand(flat.shape, generator=gen)
    out, grad = _grads(MedianSmooth(size), flat, w)
    assert torch.equal(out, _windows(flat, size).median(dim=-1).values)
    assert torch.allclose(grad, _reference_routing(flat, size, w), atol=1e-6)
    _, ones = _grads(MedianSmooth(size), flat, torch.ones_like(flat))
    assert float(ones.sum()) == pytest.approx(flat.numel())  # one pixel per output
    one = torch.zeros((1, 1, 3, 3))
    one[0, 0, 1, 1] = 1.0  # a flat image: the centre's median comes from the first pixel
    assert torch.equal(
        _grads(MedianSmooth(3), torch.full((1, 1, 3, 3), 0.5), one)[1],
        one.roll((-1, -1), (2, 3)),
    )
