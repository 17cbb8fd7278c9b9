"""The engine's differentiable FLIP: agrees with NVIDIA's evaluator and works as a penalty."""

from __future__ import annotations

import io

import flip_evaluator
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import Tensor

from workers.engine import (
    FlipLoss,
    IterativeAttack,
    LinfBudget,
    ObjectiveValue,
    RmsUpdate,
    TransformContext,
)


def _crop() -> np.ndarray:
    """A 96x96 colour crop of scikit-image's astronaut (face and suit), as float32."""
    return (data.astronaut()[40:136, 160:256].astype(np.float32) / 255.0).copy()


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].double()


def _changes(ref: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((ref * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=50)
    yy, xx = np.mgrid[: ref.shape[0], : ref.shape[1]]
    blobs = np.sin(xx * 2 * np.pi * 0.07) * np.sin(yy * 2 * np.pi * 0.07)
    return {
        "jpeg q50": np.asarray(Image.open(buf)).astype(np.float32) / 255.0,
        "grey noise": np.clip(ref + rng.integers(-4, 5, ref.shape[:2])[..., None] / 255, 0, 1),
        "luma blobs": np.clip(ref + 6 / 255 * blobs[..., None], 0, 1),
        "colour noise": np.clip(ref + 3 / 255 * rng.standard_normal(ref.shape), 0, 1),
    }


@pytest.mark.parametrize("change", ["jpeg q50", "grey noise", "luma blobs", "colour noise"])
def test_flip_matches_nvidia_flip_evaluator(change: str) -> None:
    ref = _crop()
    test = _changes(ref)[change].astype(np.float32)
    _, expected, _ = flip_evaluator.evaluate(ref, test, "LDR", applyMagma=False)
    mine = float(FlipLoss()(_t(test), _t(ref)))
    assert expected > 0.01
    assert mine == pytest.approx(expected, rel=2e-3)


def test_identical_images_have_no_error_and_a_finite_gradient() -> None:
    ref = _t(_crop()).float()
    delta = torch.zeros_like(ref, requires_grad=True)
    value = FlipLoss()(ref + delta, ref)
    (grad,) = torch.autograd.grad(value.sum(), delta)
    assert float(value.detach()) < 1e-3
    assert torch.isfinite(grad).all()


def test_a_weight_averages_over_a_region() -> None:
    ref = _t(_crop()).float()
    test = ref.clone()
    test[..., :, 48:] = (test[..., :, 48:] + 0.1).clamp(0, 1)  # change the right half only
    left = torch.zeros(1, 1, 96, 96)
    left[..., :40] = 1.0
    loss = FlipLoss()
    assert float(loss(test, ref, left)) < 0.2 * float(loss(test, ref, 1.0 - left))


def test_one_loss_compares_against_whichever_reference_it_is_given() -> None:
    ref = _t(_crop())
    changes = {name: _t(a) for name, a in _changes(_crop()).items()}
    loss = FlipLoss()
    first = float(loss(changes["jpeg q50"], ref))
    other_ref = changes["colour noise"]  # a second clean image, then the first again
    assert float(loss(changes["jpeg q50"], other_ref)) == pytest.approx(
        float(FlipLoss()(changes["jpeg q50"], other_ref))
    )
    assert float(loss(changes["jpeg q50"], ref)) == pytest.approx(first)
    assert float(loss(ref, ref)) < 1e-3


def _face_crop(size: int) -> Tensor:
    """A ``size`` square crop of the astronaut's head and shoulders, upscaled from 192 px."""
    head = torch.from_numpy(data.astronaut()[0:192, 128:320].astype(np.float32) / 255.0)
    small = head.permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear")


def test_a_large_image_is_compared_on_a_coarser_grid_at_fewer_pixels_per_degree() -> None:
    ref = _face_crop(200)
    yy, xx = torch.meshgrid(torch.arange(200.0), torch.arange(200.0), indexing="ij")
    blobs = torch.sin(xx * 2 * torch.pi / 14) * torch.sin(yy * 2 * torch.pi / 14)
    test = (ref + 8 / 255 * blobs).clamp(0, 1)
    weight = torch.zeros(1, 1, 200, 200)
    weight[..., 20:180, 30:170] = 1.0
    coarse = FlipLoss(max_side=64)
    assert coarse.pool_factor(200, 200) == 4 and coarse.pool_factor(64, 60) == 1
    pool = torch.nn.functional.avg_pool2d
    expected = FlipLoss(FlipLoss().ppd / 4)(pool(test, 4), pool(ref, 4), pool(weight, 4))
    assert float(coarse(test, ref, weight)) == pytest.approx(float(expected), rel=1e-6)
    assert float(FlipLoss(max_side=100)(test, ref, weight)) == pytest.approx(
        float(FlipLoss()(test, ref, weight)), rel=0.05
    )  # k = 2: close to the full-resolution value on a smooth change
    small = FlipLoss(max_side=256)  # no pooling below max_side: the full computation
    assert float(small(test, ref, weight)) == float(FlipLoss()(test, ref, weight))
    delta = torch.zeros_like(ref, requires_grad=True)
    (grad,) = torch.autograd.grad(coarse(test + delta, ref, weight).sum(), delta)
    assert grad.shape == ref.shape and float(grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="max_side"):
        FlipLoss(max_side=8)


class PatternBelow:
    """Loss: the change's correlation with a fixed +-1 pattern; done below ``-target``."""

    def __init__(self, pattern: Tensor, target: float) -> None:
        self.pattern, self.target = pattern, target

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        loss = ((x - ctx["input"]) * self.pattern).flatten(1).mean(1)
        return ObjectiveValue(loss, loss.detach() < -self.target)


def test_a_flip_penalty_in_shrink_mode_finds_a_less_visible_change_that_holds() -> None:
    ref = _t(_crop()).float()
    gen = torch.Generator().manual_seed(0)
    pattern = torch.where(torch.rand(ref.shape, generator=gen) < 0.5, -1.0, 1.0)
    objective = PatternBelow(pattern, 0.01)
    init = -0.03 * pattern  # holds with margin, and very visible
    flip = FlipLoss()

    def run(penalty: FlipLoss | None) -> Tensor:
        attack = IterativeAttack(
            LinfBudget(0.05), RmsUpdate(), 0.002, steps=40, shrink=0.9, penalty=penalty,
            penalty_weight=1.0,
        )  # fmt: skip
        out = attack.run(ref, objective, init=init)
        assert out.done.all()
        value = objective(ref + out.delta, TransformContext.of_batch(1).with_data(input=ref), gen)
        assert value.done.all()  # the change kept still holds
        return flip(ref + out.delta, ref)

    plain, penalised = float(run(None)), float(run(flip))
    assert penalised < 0.8 * plain
