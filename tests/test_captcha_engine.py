"""Engine pieces the CAPTCHA job added: grayscale, binarisation, SSIM and the SSIM floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from workers.engine import (
    TRANSFORMS,
    AttackSpec,
    Binarise,
    EotStep,
    Grayscale,
    LinfBudget,
    SsimFloor,
    TransformContext,
    luma,
    make_eot,
    ssim,
)
from workers.engine.spec import make_budget


def _ctx(n: int) -> TransformContext:
    return TransformContext.of_batch(n)


def test_grayscale_repeats_bt601_luma() -> None:
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = Grayscale()(x, _ctx(1), torch.Generator())
    assert out.shape == x.shape
    assert torch.allclose(out, torch.full_like(x, 0.299))


def test_binarise_is_hard_forward_with_a_gradient() -> None:
    x = torch.linspace(0, 1, 3 * 8 * 8).view(1, 3, 8, 8).requires_grad_(True)
    out = Binarise(threshold=(0.5, 0.5))(x, _ctx(1), torch.Generator())
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out[:, 0], (luma(x) > 0.5).float()[:, 0])
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_binarise_relative_level_follows_brightness() -> None:
    dim = torch.full((1, 3, 4, 4), 0.4)
    dim[..., 0, 0] = 0.1  # one dark pixel: below 0.9 x the mean, the rest above
    out = Binarise(threshold=(0.9, 0.9), relative=True)(dim, _ctx(1), torch.Generator())
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 1:, :].min() == 1


@pytest.mark.parametrize("bad", [{"threshold": (0.9, 0.5)}, {"temperature": 0.0}])
def test_binarise_rejects_bad_parameters(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Binarise(**bad)  # type: ignore[arg-type]


def test_ssim_matches_scikit_image() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand((2, 3, 40, 50), generator=gen)
    b = (a + 0.1 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        ya, yb = luma(a)[i, 0].double().numpy(), luma(b)[i, 0].double().numpy()
        ref = structural_similarity(
            ya, yb, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert abs(float(ours[i]) - ref) < 1e-5
    assert torch.allclose(ssim(a, a), torch.ones(2))


def test_ssim_floor_scales_only_samples_below_it() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.full((2, 3, 32, 32), 0.5)
    delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * 0.2
    delta[1] *= 0.01  # tiny: already above the floor
    budget = SsimFloor(LinfBudget(0.1), floor=0.9)
    out = budget.project(delta, x)
    inner = LinfBudget(0.1).project(delta, x)
    scores = ssim(x + out, x)
    assert scores[0] >= 0.9 and scores[0] < 0.95  # scaled to just above the floor
    assert torch.equal(out[1], inner[1])
    assert out.abs().max() <= 0.1 + 1e-7


def test_spec_ssim_floor_builds_the_wrapped_budget() -> None:
    spec = AttackSpec(eps=8 / 255, ssim_floor=0.8)
    budget = make_budget(spec)
    assert isinstance(budget, SsimFloor) and isinstance(budget.inner, LinfBudget)
    assert "SSIM >= 0.8" in spec.describe()
    assert isinstance(make_budget(spec.with_(ssim_floor=None)), LinfBudget)


def test_eot_names_the_new_transforms() -> None:
    assert {"grayscale", "binarise"} <= set(TRANSFORMS)
    spec = AttackSpec(eps=0.1, eot=(EotStep("grayscale", 1.0), EotStep("binarise", 1.0)),
                      eot_samples=2, eot_keep_first_clean=False)  # fmt: skip
    x = torch.rand(3, 3, 8, 8)
    out = make_eot(spec)(x, _ctx(3), torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 8, 8)
    assert set(np.unique(out.numpy()).tolist()) <= {0.0, 1.0}
