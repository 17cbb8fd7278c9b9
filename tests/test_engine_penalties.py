"""Change penalties: structural dissimilarity (1 - SSIM) and weighted sums of penalties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity
from torch import Tensor

from workers.engine import AttackSpec, FlipLoss, PenaltySum, SsimLoss, make_penalty, ssim


def _face() -> Tensor:
    """A 96x96 crop of scikit-image's astronaut, ``[1, 3, 96, 96]`` float64."""
    crop = data.astronaut()[40:136, 160:256].astype(np.float64) / 255.0
    return torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()


def _noise(like: Tensor, scale: float, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    grey = torch.randn(like.shape[0], 1, *like.shape[2:], generator=gen, dtype=like.dtype)
    return scale * grey.expand_as(like)


def test_ssim_loss_is_one_minus_skimage_ssim_on_luma() -> None:
    ref = _face()
    test = (ref + _noise(ref, 6 / 255)).clamp(0, 1)
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=ref.dtype).view(1, 3, 1, 1)
    a, b = ((t * luma).sum(1)[0].numpy() for t in (ref, test))
    expected = structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert float(SsimLoss()(test, ref)) == pytest.approx(1 - expected, rel=1e-3)
    assert float(SsimLoss()(test, ref)) == pytest.approx(1 - float(ssim(test, ref)))


def test_ssim_loss_counts_only_windows_inside_the_mask() -> None:
    ref = _face()
    change = torch.zeros_like(ref)
    change[..., :, :40] = _noise(ref, 8 / 255)[..., :, :40]  # left part only
    mask = torch.zeros(1, 1, 96, 96, dtype=ref.dtype)
    mask[..., 20:76, 60:90] = 1.0  # far (> one window) from the change
    test = ref + change
    assert float(SsimLoss()(test, ref)) > 0.01
    assert float(SsimLoss()(test, ref, mask)) == pytest.approx(0.0, abs=1e-9)
    mask[..., 20:76, 10:30] = 1.0  # now covering part of the change too
    assert float(SsimLoss()(test, ref, mask)) > 0.01


def test_stepping_down_the_ssim_loss_makes_the_change_less_structural() -> None:
    ref = _face()
    delta = _noise(ref, 6 / 255).clone().requires_grad_(True)
    loss = SsimLoss()
    before = float(loss(ref + delta, ref).detach())
    for _ in range(20):
        (grad,) = torch.autograd.grad(loss(ref + delta, ref).sum(), delta)
        delta = (delta - 0.5 * grad / grad.abs().max() * (1 / 255)).detach().requires_grad_(True)
    assert float(loss(ref + delta, ref).detach()) < 0.8 * before


def test_penalty_sum_weights_its_terms_and_the_spec_builds_it() -> None:
    ref = _face()
    test = (ref + _noise(ref, 4 / 255)).clamp(0, 1)
    flip, structure = FlipLoss(), SsimLoss()
    total = PenaltySum([(flip, 2.0), (structure, 3.0)])(test, ref, None)
    expected = 2.0 * flip(test, ref) + 3.0 * structure(test, ref)
    assert torch.allclose(total, expected)
    assert make_penalty(AttackSpec(eps=0.1)) is None
    both = make_penalty(AttackSpec(eps=0.1, flip_weight=2.0, ssim_weight=3.0))
    assert both is not None
    assert torch.allclose(both(test, ref, None), expected)
    only_ssim = make_penalty(AttackSpec(eps=0.1, ssim_weight=3.0))
    assert only_ssim is not None
    assert torch.allclose(only_ssim(test, ref, None), 3.0 * structure(test, ref))
    with pytest.raises(ValueError):
        PenaltySum([])
