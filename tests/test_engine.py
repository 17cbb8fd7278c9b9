"""Tests of the attack engine on tiny synthetic models (CPU, seconds)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from workers.engine import (
    AttackSpec,
    DifferentiableJpeg,
    Ensemble,
    GradientSmoothing,
    InputDiversity,
    IterativeAttack,
    LinfBudget,
    MomentumUpdate,
    ObjectiveValue,
    RandomRescale,
    SignUpdate,
    TransformContext,
    build_attack,
    cosine_similarity,
    difgsm,
    dimifgsm,
    dodging_loss,
    fgsm,
    ifgsm,
    impersonation_loss,
    mifgsm,
    ti_dimifgsm,
)

from .helpers import dev_photo

EPS = 8 / 255


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyEmbedder:
    """A fixed random conv net: [B, 3, H, W] -> [B, 16] embeddings."""

    def __init__(self, seed: int = 0) -> None:
        g = gen(seed)
        self.w1 = torch.randn(8, 3, 3, 3, generator=g) * 0.5
        self.w2 = torch.randn(16, 8 * 4 * 4, generator=g) * 0.2

    def __call__(self, x: Tensor) -> Tensor:
        h = torch.tanh(F.conv2d(x, self.w1, padding=1))
        h = F.adaptive_avg_pool2d(h, 4).flatten(1)
        return h @ self.w2.T


def images(batch: int = 3, size: int = 16, seed: int = 1) -> Tensor:
    return torch.rand(batch, 3, size, size, generator=gen(seed)) * 0.6 + 0.2


def ctx_of(x: Tensor) -> TransformContext:
    return TransformContext.of_batch(x.shape[0])


Objective = Callable[[Tensor, TransformContext, torch.Generator], ObjectiveValue]


def dodging_objective(
    model: TinyEmbedder, x: Tensor, done_fn: Callable[[Tensor, Tensor], Tensor] | None = None
) -> Objective:
    clean = model(x).detach()

    def objective(x_adv: Tensor, ctx: TransformContext, _: torch.Generator) -> ObjectiveValue:
        idx = ctx.index
        loss = dodging_loss(model(x_adv), clean[idx])
        done = torch.zeros_like(loss, dtype=torch.bool) if done_fn is None else done_fn(loss, idx)
        return ObjectiveValue(loss=loss, done=done)

    return objective


# --- budget -------------------------------------------------------------------------------


def test_projection_keeps_budget_and_valid_pixels() -> None:
    x = torch.rand(4, 3, 8, 8, generator=gen(0))
    delta = torch.randn(4, 3, 8, 8, generator=gen(1))
    budget = LinfBudget(EPS)
    out = budget.project(delta, x)
    assert out.abs().max() <= EPS + 1e-7
    assert (x + out).min() >= 0.0 and (x + out).max() <= 1.0
    inside = torch.full_like(x, 0.5)
    small = delta.clamp(-EPS / 2, EPS / 2)
    assert torch.equal(budget.project(small, inside), small)


def test_random_start_in_budget_and_seeded() -> None:
    x = torch.rand(2, 3, 8, 8, generator=gen(0))
    budget = LinfBudget(EPS)
    a, b, c = (budget.random_start(x, gen(s)) for s in (5, 5, 6))
    assert a.abs().max() <= EPS + 1e-7 and ((x + a) >= 0).all() and ((x + a) <= 1).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().mean() > EPS / 4


# --- update rules ---------------------------------------------------------------------------


def test_sign_update_is_sign() -> None:
    grad = torch.tensor([[-2.0, 0.0, 3.0]])
    assert torch.equal(SignUpdate().direction(grad, torch.tensor([0])), grad.sign())


def test_momentum_accumulates_normalised_gradient_per_sample() -> None:
    rule = MomentumUpdate(decay=1.0)
    g1 = torch.tensor([[10.0, 10.0, -10.0, 10.0], [1.0, 1.0, 1.0, 1.0]])
    g2 = torch.tensor([[-1.0, 1.0, 1.0, -3.0], [-1.0, -1.0, -1.0, -1.0]])
    rule.reset()
    rule.direction(g1, torch.tensor([0, 1]))
    # Only sample 0 remains: its velocity g1/10 + g2/1.5 decides, sample 1's state is untouched.
    out = rule.direction(g2[:1], torch.tensor([0]))
    expected = (g1[0] / 10.0 + g2[0] / 1.5).sign()
    assert torch.equal(out[0], expected)
    assert not torch.equal(out[0], g2[0].sign())
    # Sample 1 comes back with its own velocity (all ones) plus -1s: sum is zero -> sign 0.
    out1 = rule.direction(g2[1:], torch.tensor([1]))
    assert torch.equal(out1[0], torch.zeros(4))
    rule.reset()
    assert torch.equal(rule.direction(g2[:1], torch.tensor([0])), g2[:1].sign())


def test_momentum_attack_differs_from_sign_attack() -> None:
    model, x = TinyEmbedder(), images()
    objective = dodging_objective(model, x)
    a = build_attack(ifgsm(EPS, steps=6, step_size=1 / 255)).run(x, objective)
    b = build_attack(mifgsm(EPS, steps=6, step_size=1 / 255)).run(x, objective)
    assert not torch.equal(a.delta, b.delta)


# --- the attack loop ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: fgsm(EPS),
        lambda: ifgsm(EPS, steps=5),
        lambda: mifgsm(EPS, steps=5),
        lambda: difgsm(EPS, steps=5),
        lambda: dimifgsm(EPS, steps=5),
        lambda: ti_dimifgsm(EPS, steps=5),
        lambda: ifgsm(EPS, steps=5, random_start=True),
    ],
    ids=["fgsm", "ifgsm", "mifgsm", "difgsm", "dimifgsm", "ti_dimifgsm", "pgd"],
)
def test_every_preset_lowers_the_loss(make: Callable[[], AttackSpec]) -> None:
    model, x = TinyEmbedder(), images()
    clean = model(x)
    result = build_attack(make()).run(x, dodging_objective(model, x), generator=gen(3))
    after = dodging_loss(model(x + result.delta), clean)
    assert result.delta.abs().max() <= EPS + 1e-6
    assert ((x + result.delta) >= 0).all() and ((x + result.delta) <= 1).all()
    noise = (torch.randint(0, 2, x.shape, generator=gen(9)) * 2 - 1) * EPS
    by_noise = dodging_loss(model((x + noise).clamp(0, 1)), clean)
    assert (by_noise > 0.999).all()
    assert (after < by_noise - 0.002).all(), after  # far better than random noise


def test_fgsm_is_one_step_of_eps() -> None:
    model, x = TinyEmbedder(), images()
    result = build_attack(fgsm(EPS)).run(x, dodging_objective(model, x))
    assert result.steps.tolist() == [1, 1, 1]
    assert len(result.loss_history) == 1
    nonzero = result.delta[result.delta != 0]
    assert torch.allclose(nonzero.abs(), torch.full_like(nonzero, EPS))
    assert nonzero.numel() > 0.9 * result.delta.numel()


def test_seeded_runs_are_reproducible_and_seeds_differ() -> None:
    model, x = TinyEmbedder(), images()
    objective = dodging_objective(model, x)
    attack = build_attack(dimifgsm(EPS, steps=4, diversity=1.0, random_start=True))
    a = attack.run(x, objective, generator=gen(11)).delta
    b = attack.run(x, objective, generator=gen(11)).delta
    c = attack.run(x, objective, generator=gen(12)).delta
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_mask_keeps_delta_zero_outside() -> None:
    model, x = TinyEmbedder(), images()
    mask = torch.zeros(3, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1.0
    result = build_attack(ifgsm(EPS, steps=3, random_start=True)).run(
        x, dodging_objective(model, x), mask=mask, generator=gen(0)
    )
    assert torch.equal(result.delta * (1 - mask), torch.zeros_like(result.delta))
    assert (result.delta[:, :, 4:12, 4:12] != 0).float().mean() > 0.9


def test_early_stop_freezes_done_samples() -> None:
    model, x = TinyEmbedder(), images()
    seen: list[list[int]] = []

    def first_is_done(loss: Tensor, idx: Tensor) -> Tensor:
        seen.append(idx.tolist())
        return idx == 0

    result = build_attack(ifgsm(EPS, steps=4)).run(x, dodging_objective(model, x, first_is_done))
    assert result.steps.tolist() == [0, 4, 4]
    assert result.done.tolist() == [True, False, False]
    assert torch.equal(result.delta[0], torch.zeros_like(result.delta[0]))
    assert result.delta[1:].abs().max() > 0
    assert seen == [[0, 1, 2], [1, 2], [1, 2], [1, 2]]


def test_early_stop_after_some_steps_and_check_every() -> None:
    model, x = TinyEmbedder(), images()

    def done_at_step_two(loss: Tensor, idx: Tensor) -> Tensor:
        calls.append(1)
        return torch.full_like(idx, len(calls) >= 3, dtype=torch.bool) & (idx == 1)

    calls: list[int] = []
    result = build_attack(ifgsm(EPS, steps=6)).run(x, dodging_objective(model, x, done_at_step_two))
    assert result.steps.tolist() == [6, 2, 6]
    assert result.done.tolist() == [False, True, False]

    calls = []
    attack = IterativeAttack(LinfBudget(EPS), SignUpdate(), 1 / 255, 6, check_every=4)
    result = attack.run(x, dodging_objective(model, x, done_at_step_two))
    assert result.steps.tolist() == [6, 4, 6]  # flagged at step 2, honoured at step 4


def test_all_done_stops_the_loop() -> None:
    model, x = TinyEmbedder(), images()
    result = build_attack(ifgsm(EPS, steps=5)).run(
        x, dodging_objective(model, x, lambda loss, idx: torch.ones_like(idx, dtype=torch.bool))
    )
    assert result.steps.tolist() == [0, 0, 0] and result.done.all()
    assert len(result.loss_history) == 1
    assert torch.equal(result.delta, torch.zeros_like(x))


def test_objective_shape_is_checked() -> None:
    x = images()

    def bad(x_adv: Tensor, ctx: TransformContext, _: torch.Generator) -> ObjectiveValue:
        return ObjectiveValue(loss=x_adv.sum(), done=torch.zeros(1, dtype=torch.bool))

    with pytest.raises(ValueError):
        build_attack(ifgsm(EPS)).run(x, bad)


# --- transforms -------------------------------------------------------------------------------


def test_input_diversity_shape_identity_and_gradient() -> None:
    x = images(2, 20).requires_grad_(True)
    assert InputDiversity(prob=0.0)(x, ctx_of(x), gen(0)) is x
    outs = [InputDiversity(prob=1.0, resize_rate=1.3)(x, ctx_of(x), gen(s)) for s in range(4)]
    assert all(o.shape == x.shape for o in outs)
    assert not torch.allclose(outs[0], x)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    outs[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    rect = torch.rand(1, 3, 12, 30, generator=gen(0))
    assert InputDiversity(prob=1.0)(rect, ctx_of(rect), gen(1)).shape == rect.shape


def test_gradient_smoothing_turns_an_impulse_into_a_gaussian() -> None:
    grad = torch.zeros(1, 3, 15, 15)
    grad[0, 1, 7, 7] = 1.0
    out = GradientSmoothing(kernel_size=7, sigma=3.0)(grad)
    assert out.shape == grad.shape
    assert torch.equal(out[0, 0], torch.zeros(15, 15)) and torch.equal(out[0, 2], out[0, 0])
    patch = out[0, 1, 4:11, 4:11]
    assert torch.isclose(out[0, 1].sum(), torch.tensor(1.0))
    assert torch.isclose(patch.sum(), torch.tensor(1.0)) and out[0, 1, 3].abs().sum() == 0
    assert patch[3, 3] == patch.max() and patch[3, 3] < 0.1
    assert torch.allclose(patch, patch.T) and torch.allclose(patch, patch.flip(0))
    ratio = patch[3, 4] / patch[3, 3]
    assert torch.isclose(ratio, torch.exp(torch.tensor(-1 / 18)), atol=1e-5)


def test_random_rescale_keeps_shape_and_is_differentiable() -> None:
    x = images(2, 32).requires_grad_(True)
    out = RandomRescale(0.5, 0.6)(x, ctx_of(x), gen(0))
    assert out.shape == x.shape
    assert (out - x).abs().mean() > 0.01
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert RandomRescale.at_scale(x, 1.0) is x


def _photo_crop() -> Tensor:
    with Image.open(dev_photo("img1.jpg")) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        crop = rgb.crop((w // 2 - 100, h // 3 - 100, w // 2 + 101, h // 3 + 93))  # not /16
        return torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float() / 255.0


def _pillow_jpeg(x: Tensor, quality: int) -> Tensor:
    arr = (x[0].permute(1, 2, 0) * 255).round().byte().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        out = np.array(im.convert("RGB"))
    return torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255.0


def test_differentiable_jpeg_matches_pillow() -> None:
    x = _photo_crop()
    jpeg = DifferentiableJpeg()
    real75 = _pillow_jpeg(x, 75)
    ours75 = jpeg.compress(x, 75)
    assert ours75.shape == x.shape
    assert (ours75 - real75).abs().mean() < 2 / 255
    assert (ours75 - real75).abs().mean() < 0.5 * (x - real75).abs().mean()
    # Per-sample quality: each output is nearest to Pillow at its own quality.
    both = jpeg.compress(x.repeat(2, 1, 1, 1), torch.tensor([10.0, 90.0]))
    real10, real90 = _pillow_jpeg(x, 10), _pillow_jpeg(x, 90)
    assert (both[0] - real10[0]).abs().mean() < (both[0] - real90[0]).abs().mean()
    assert (both[1] - real90[0]).abs().mean() < (both[1] - real10[0]).abs().mean()
    assert (both[0] - real10[0]).abs().mean() < 2 / 255


def test_differentiable_jpeg_gradients_flow() -> None:
    x = images(2, 24).requires_grad_(True)
    out = DifferentiableJpeg().compress(x, torch.tensor([50.0, 80.0]))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # As a transform: each sample at its own random quality in the range, seeded.
    jpeg = DifferentiableJpeg((30, 90))
    y = images(4, 24)
    a, b = jpeg(y, ctx_of(y), gen(5)), jpeg(y, ctx_of(y), gen(5))
    assert torch.equal(a, b) and not torch.equal(a, y)


# --- losses -----------------------------------------------------------------------------------


def test_losses() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    ref = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    assert torch.allclose(cosine_similarity(emb, ref), torch.tensor([1.0, 0.0]))
    assert torch.allclose(cosine_similarity(emb, ref[0]), torch.tensor([1.0, 0.0]))
    assert torch.allclose(dodging_loss(emb, ref), torch.tensor([1.0, 0.0]))
    assert torch.allclose(impersonation_loss(emb, ref), torch.tensor([-1.0, 0.0]))
    with pytest.raises(ValueError):
        Ensemble([])
