"""The perceptual budget: luma/chroma limits, visibility mask, grey images, band-limiting."""

from __future__ import annotations

import pytest
import torch

from workers.engine.perceptual import (
    PerceptualBudget,
    band_pass,
    rgb_to_ycbcr,
    visibility_mask,
    ycbcr_to_rgb,
)

TOL = 1e-5


def photo_like(seed: int = 0, grey: bool = False) -> torch.Tensor:
    """[2, 3, 48, 64]: smooth colour gradients plus a textured patch, some saturated pixels."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    base = torch.stack([0.3 + 0.6 * xs, 0.2 + 0.5 * ys, 0.4 * xs * ys])
    x = base.unsqueeze(0).repeat(2, 1, 1, 1)
    x[:, :, 10:30, 30:60] += 0.3 * torch.rand(2, 3, 20, 30, generator=gen) - 0.15
    x[:, :, :4, :4] = 1.0
    x[:, :, -4:, -4:] = 0.0
    if grey:
        x = x.mean(1, keepdim=True).repeat(1, 3, 1, 1)
    return x.clamp(0, 1)


def test_projection_respects_luma_and_chroma_limits() -> None:
    x = photo_like()
    budget = PerceptualBudget(eps_luma=4 / 255, eps_chroma=1 / 255)
    delta = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * 0.2
    out = budget.project(delta, x)
    ycc, lim = rgb_to_ycbcr(out).abs(), budget.limits(x)
    assert (ycc <= lim + TOL).all()
    assert ((x + out) >= -TOL).all() and ((x + out) <= 1 + TOL).all()
    assert out.abs().amax() > 3 / 255  # the budget is used, not collapsed to zero
    # chroma is held much tighter than luma
    assert ycc[:, 1:].amax() < ycc[:, 0].amax() / 2


def test_projection_keeps_a_delta_already_inside() -> None:
    x = 0.2 + 0.6 * photo_like()  # well inside [0, 1]
    budget = PerceptualBudget(eps_luma=4 / 255, eps_chroma=2 / 255)
    inside = ycbcr_to_rgb(budget.limits(x) * 0.5 * torch.sign(torch.randn(x.shape)))
    assert torch.allclose(budget.project(inside, x), inside, atol=1e-7)


def test_random_start_is_inside_and_reproducible() -> None:
    x = photo_like()
    budget = PerceptualBudget(eps_luma=6 / 255, eps_chroma=1.5 / 255)
    a = budget.random_start(x, torch.Generator().manual_seed(3))
    b = budget.random_start(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (rgb_to_ycbcr(a).abs() <= budget.limits(x) + TOL).all()
    assert a.abs().amax() > 0


def test_grey_images_get_grey_perturbations() -> None:
    x = photo_like(grey=True)
    budget = PerceptualBudget(eps_luma=4 / 255, eps_chroma=2 / 255)
    colourful = torch.randn(x.shape, generator=torch.Generator().manual_seed(2)) * 0.1
    for delta in (budget.project(colourful, x), budget.random_start(x, torch.Generator())):
        assert delta.abs().amax() > 1 / 255
        assert torch.allclose(delta[:, 0], delta[:, 1], atol=1e-6)
        assert torch.allclose(delta[:, 1], delta[:, 2], atol=1e-6)
        adv = torch.round((x + delta) * 255)
        assert torch.equal(adv[:, 0], adv[:, 1]) and torch.equal(adv[:, 1], adv[:, 2])


def test_colour_photo_keeps_its_chroma_room() -> None:
    budget = PerceptualBudget(eps_luma=4 / 255, eps_chroma=2 / 255)
    colour_lim = budget.limits(photo_like())
    grey_lim = budget.limits(photo_like(grey=True))
    assert colour_lim[:, 1:].amax() > 0
    assert grey_lim[:, 1:].amax() == 0


def test_mask_is_higher_on_texture_than_on_flat_skin() -> None:
    gen = torch.Generator().manual_seed(0)
    skin = torch.tensor([0.8, 0.6, 0.5]).view(1, 3, 1, 1)
    x = skin.repeat(1, 1, 40, 80)
    x[:, :, :, 40:] += 0.25 * torch.rand(1, 1, 40, 40, generator=gen) - 0.125  # hair-like texture
    mask = visibility_mask(x.clamp(0, 1), gain=(0.1, 10.0))
    flat, textured = mask[..., 5:35, 5:35].mean(), mask[..., 5:35, 45:75].mean()
    assert textured > 1.25 * flat
    # flat mid-grey is the reference (1.0); dark areas tolerate more (luminance adaptation)
    mid_grey = visibility_mask(torch.full((1, 3, 16, 16), 127 / 255))
    assert mid_grey.mean().item() == pytest.approx(1.0, abs=0.02)
    assert visibility_mask(torch.full((1, 3, 16, 16), 0.1)).mean() > 1.5


def test_band_pass_keeps_and_removes_the_right_frequencies() -> None:
    flat = torch.full((1, 3, 32, 32), 0.5)
    assert torch.allclose(band_pass(flat, fine_sigma=1.0), flat, atol=1e-5)
    assert band_pass(flat, coarse_sigma=4.0).abs().amax() < 1e-5
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2 * 2.0 - 1.0
    checker = checker.expand(1, 3, 32, 32)
    assert band_pass(checker, fine_sigma=1.0).abs().amax() < 0.05  # finest detail is removed
    assert torch.allclose(band_pass(checker, coarse_sigma=4.0), checker, atol=0.05)
    noise = torch.randn(1, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    mid = band_pass(noise, 1.0, 4.0)
    assert mid.shape == noise.shape
    assert 0.01 < mid.std() < band_pass(noise, 1.0).std() < noise.std()


def test_gradients_flow_through_band_pass_colour_space_and_projection() -> None:
    x = 0.2 + 0.6 * photo_like()
    budget = PerceptualBudget(eps_luma=8 / 255, eps_chroma=4 / 255)
    delta = (torch.randn(x.shape) * 1e-3).requires_grad_(True)
    out = budget.project(band_pass(ycbcr_to_rgb(rgb_to_ycbcr(delta)), 0.7, 6.0), x)
    (out * torch.linspace(-1, 1, x.shape[-1])).sum().backward()
    assert delta.grad is not None
    assert delta.grad.abs().sum() > 0
    # a delta inside the budget passes the gradient of the identity through the projection
    d2 = (torch.randn(x.shape) * 1e-4).requires_grad_(True)
    budget.project(d2, x).sum().backward()
    assert d2.grad is not None and torch.allclose(d2.grad, torch.ones_like(d2))


def test_colour_space_round_trip_and_luma_weights() -> None:
    t = torch.rand(2, 3, 5, 7)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(t)), t, atol=1e-6)
    grey = torch.full((1, 3, 2, 2), 0.25)
    ycc = rgb_to_ycbcr(grey)
    assert torch.allclose(ycc[:, 0], torch.full((1, 2, 2), 0.25), atol=1e-6)
    assert ycc[:, 1:].abs().amax() < 1e-6
