"""The engine's composable parts: context, RandomApply/Compose/EOT, objectives, budgets,
Adam, the universal trigger, and the attack spec (tiny synthetic models, CPU). The filters
are tested in ``tests/test_engine_filters.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine import (
    CTC,
    EOT,
    INPUT,
    AdamUpdate,
    AttackSpec,
    Compose,
    CosineDodging,
    CosineImpersonation,
    CrossEntropy,
    Ensemble,
    EotStep,
    Expectation,
    GroupTriggerBudget,
    Identity,
    IterativeAttack,
    L1Penalty,
    L2Budget,
    L2Penalty,
    ModelObjective,
    ObjectiveValue,
    RandomApply,
    SignUpdate,
    Sum,
    TotalVariationPenalty,
    TransformContext,
    TriggerBudget,
    build_attack,
    dimifgsm,
    fgsm,
    ifgsm,
    make_eot,
    mifgsm,
    ti_dimifgsm,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 4, size: int = 8) -> Tensor:
    return torch.rand(n, 3, size, size, generator=gen(1)) * 0.6 + 0.2


class AddRow:
    """Adds ``ctx["offset"]`` per sample: shows that context rows follow the samples."""

    def __call__(self, x: Tensor, ctx: TransformContext, g: torch.Generator) -> Tensor:
        return x + ctx["offset"].view(-1, 1, 1, 1)


def test_context_select_repeat_and_checks() -> None:
    ctx = TransformContext.of_batch(3, offset=torch.tensor([1.0, 2.0, 3.0]))
    assert ctx.select(torch.tensor([2, 0])).index.tolist() == [2, 0]
    assert ctx.select(torch.tensor([2, 0]))["offset"].tolist() == [3.0, 1.0]
    assert ctx.repeat_interleave(2)["offset"].tolist() == [1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError):
        TransformContext(torch.arange(2), {"offset": torch.zeros(3)})
    with pytest.raises(KeyError, match="offset"):
        TransformContext.of_batch(1)["offset"]


def test_random_apply_transforms_a_seeded_subset_with_its_context_rows() -> None:
    x = torch.zeros(64, 1, 1, 1)
    ctx = TransformContext.of_batch(64, offset=torch.arange(64.0))
    out = RandomApply(AddRow(), 0.5)(x, ctx, gen(0)).flatten()
    hit = out != 0
    assert 15 < int(hit.sum()) < 49
    assert torch.equal(out[hit], torch.arange(64.0)[hit])
    assert torch.equal(RandomApply(AddRow(), 0.5)(x, ctx, gen(0)).flatten(), out)
    assert torch.equal(RandomApply(AddRow(), 0.0)(x, ctx, gen(0)), x)


def test_compose_and_eot_keep_the_first_copy_clean() -> None:
    x = torch.zeros(2, 1, 1, 1)
    ctx = TransformContext.of_batch(2, offset=torch.tensor([1.0, 10.0]))
    twice = Compose([AddRow(), AddRow(), Identity()])
    assert twice(x, ctx, gen()).flatten().tolist() == [2.0, 20.0]
    eot = EOT(AddRow(), samples=3, keep_first_clean=True)
    assert eot(x, ctx, gen()).flatten().tolist() == [0.0, 1.0, 1.0, 0.0, 10.0, 10.0]
    assert eot.context(ctx).index.tolist() == [0, 0, 0, 1, 1, 1]
    every = EOT(AddRow(), samples=2, keep_first_clean=False)
    assert every(x, ctx, gen()).flatten().tolist() == [1.0, 1.0, 10.0, 10.0]


def test_make_eot_from_spec_steps() -> None:
    spec = AttackSpec(eps=0.03, eot=(EotStep("blur", 1.0, {"sigma": 2.0}),), eot_samples=2)
    x = batch(2)
    out = make_eot(spec)(x, TransformContext.of_batch(2), gen())
    assert out.shape == (4, 3, 8, 8)
    assert torch.equal(out[0], x[0]) and not torch.equal(out[1], x[0])
    with pytest.raises(KeyError, match="makeup"):
        make_eot(AttackSpec(eps=0.03, eot=(EotStep("makeup", 0.5),)))


# --- objectives --------------------------------------------------------------------------------


def test_cosine_objectives_and_ensemble() -> None:
    out = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ctx = TransformContext.of_batch(2, ref=torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    dodge = CosineDodging("ref", threshold=0.5, margin=0.1)(out, ctx)
    assert dodge.loss.tolist() == [1.0, 0.0] and dodge.done.tolist() == [False, True]
    pull = CosineImpersonation("ref")(out, ctx)
    assert pull.loss.tolist() == [-1.0, 0.0] and pull.done.all()
    reach = CosineImpersonation("ref", threshold=0.9)(out, ctx)
    assert reach.done.tolist() == [True, False]

    def constant(values: list[float], done: list[bool]):  # type: ignore[no-untyped-def]
        return lambda x, c, g: ObjectiveValue(torch.tensor(values), torch.tensor(done))

    mean = Ensemble([(constant([1.0, 0.0], [True, True]), 3.0),
                     (constant([0.0, 4.0], [True, False]), 1.0)])  # fmt: skip
    value = mean(torch.zeros(2), ctx, gen())
    assert torch.allclose(value.loss, torch.tensor([0.75, 1.0]))
    assert value.done.tolist() == [True, False]
    total = Sum(
        [(constant([1.0, 0.0], [True, True]), 2.0), (constant([1.0, 1.0], [True, True]), 1.0)]
    )
    assert total(torch.zeros(2), ctx, gen()).loss.tolist() == [3.0, 1.0]
    with pytest.raises(ValueError):
        Ensemble([(constant([1.0], [True]), -1.0)])


def test_cross_entropy_targeted_and_untargeted() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    ctx = TransformContext.of_batch(2, label=torch.tensor([0, 0]))
    away = CrossEntropy()(logits, ctx)
    assert away.done.tolist() == [False, True]
    assert torch.allclose(
        away.loss, -F.cross_entropy(logits, torch.tensor([0, 0]), reduction="none")
    )
    toward = CrossEntropy(targeted=True)(logits, ctx)
    assert toward.done.tolist() == [True, False] and (toward.loss > 0).all()


def test_ctc_reads_and_unreads_the_text() -> None:
    # 5 time steps, classes: 0 blank, 1 'a', 2 'b'; the path a a - b - reads "ab"
    path = torch.tensor([1, 1, 0, 2, 0])
    logits = F.one_hot(path, 3).float()[None] * 10.0
    ctx = TransformContext.of_batch(
        1, targets=torch.tensor([[1, 2]]), target_lengths=torch.tensor([2])
    )
    targeted = CTC(targeted=True)(logits, ctx)
    assert targeted.done.tolist() == [True] and targeted.loss.item() < 0.1
    other = TransformContext.of_batch(
        1, targets=torch.tensor([[2, 1]]), target_lengths=torch.tensor([2])
    )
    untargeted = CTC()(logits, other)
    assert untargeted.done.tolist() == [True] and untargeted.loss.item() < -1.0


def test_penalties_measure_the_change_from_the_input() -> None:
    x = torch.zeros(2, 1, 2, 2)
    moved = x.clone()
    moved[0, 0, 0, 0] = 0.5
    ctx = TransformContext.of_batch(2, **{INPUT: x})
    assert L1Penalty()(moved, ctx, gen()).loss.tolist() == [0.125, 0.0]
    assert L2Penalty()(moved, ctx, gen()).loss.tolist() == [0.25, 0.0]
    tv = TotalVariationPenalty()(moved, ctx, gen())
    assert tv.loss[0] > 0 and tv.loss[1] == 0 and tv.done.all()


def test_expectation_averages_over_samples() -> None:
    ctx = TransformContext.of_batch(2, offset=torch.tensor([1.0, 2.0]))

    def mean_pixel(x: Tensor, c: TransformContext, g: torch.Generator) -> ObjectiveValue:
        loss = x.flatten(1).mean(1)
        return ObjectiveValue(loss, loss < 1.5)

    value = Expectation(mean_pixel, EOT(AddRow(), samples=2))(torch.zeros(2, 1, 1, 1), ctx, gen())
    assert value.loss.tolist() == [0.5, 1.0]
    assert value.done.tolist() == [True, False]


# --- budgets, optimisers, loop -------------------------------------------------------------


def test_l2_budget_projects_into_the_ball() -> None:
    x = torch.full((3, 3, 8, 8), 0.5)
    delta = torch.randn(3, 3, 8, 8, generator=gen(2))
    budget = L2Budget(0.5)
    out = budget.project(delta, x)
    assert (out.flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    start = budget.random_start(x, gen(3))
    assert (start.flatten(1).norm(dim=1) <= 0.5 + 1e-5).all() and start.abs().sum() > 0


def test_adam_is_bias_corrected_per_sample() -> None:
    rule = AdamUpdate()
    grad = torch.tensor([[2.0, -4.0], [1.0, 1.0]])
    first = rule.direction(grad, torch.tensor([0, 1]))
    assert torch.allclose(first, grad.sign(), atol=1e-6)  # first Adam step is ~sign(grad)
    second = rule.direction(-grad[:1], torch.tensor([0]))
    assert second.abs().max() < 1.0  # opposing gradient: the moment shrinks the step
    rule.reset()
    assert torch.allclose(rule.direction(grad[1:], torch.tensor([1])), torch.ones(1, 2), atol=1e-6)


def tiny_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))


def test_l2_adam_cross_entropy_attack_flips_a_linear_classifier() -> None:
    model, x = tiny_classifier(), batch(6)
    labels = model(x).argmax(1).detach()
    ctx = TransformContext.of_batch(6, label=labels)
    objective = ModelObjective(model, [(CrossEntropy(), 1.0)])
    spec = AttackSpec(eps=3.0, steps=60, step_size=0.05, budget="l2", optimizer="adam")
    result = build_attack(spec).run(x, objective, ctx, generator=gen())
    assert (result.delta.flatten(1).norm(dim=1) <= 3.0 + 1e-4).all()
    assert (model(x + result.delta).argmax(1) != labels).all()
    assert result.done.all() and (result.steps < 60).all()


def test_universal_trigger_is_shared_small_and_flips_the_batch() -> None:
    """Backdoor-scan style: one mask + pattern for the whole batch, Adam, L1 on the mask."""

    def backdoored(x: Tensor) -> Tensor:  # class 1 when the top-left 2x2 of red is bright
        bright = x[:, 0, :2, :2].mean(dim=(1, 2))
        return torch.stack([torch.zeros_like(bright), 40.0 * (bright - 0.9)], dim=1)

    x = batch(8) * 0.5
    ctx = TransformContext.of_batch(8, label=torch.ones(8, dtype=torch.long))
    objective = ModelObjective(backdoored, [(CrossEntropy(targeted=True), 1.0)])
    attack = IterativeAttack(TriggerBudget(l1_weight=0.01), AdamUpdate(), 0.05, 300)
    result = attack.run(x, objective, ctx, generator=gen())
    assert result.param is not None and result.param.shape == (1, 4, 8, 8)
    assert (backdoored(x + result.delta).argmax(1) == 1).all()
    mask = result.param[0, 0]
    assert mask[:2, :2].mean() > 0.5 and mask.sum() < 12  # small, where the backdoor is


def test_spec_names_and_presets() -> None:
    assert fgsm(0.1).name == "FGSM" and fgsm(0.1).alpha == 0.1
    assert ifgsm(0.1).name == "I-FGSM" and ifgsm(0.1, random_start=True).name == "PGD"
    assert mifgsm(0.1).name == "MI-FGSM" and dimifgsm(0.1).name == "DI-MI-FGSM"
    assert ti_dimifgsm(0.1).name == "TI-DI-MI-FGSM"
    assert ifgsm(8 / 255).alpha == pytest.approx(2 / 255)
    spec = dimifgsm(0.05, eot=(EotStep("jpeg", 0.6),), eot_samples=2, quantise=True)
    assert spec.describe() == "DI-MI-FGSM (L-inf) + EOT(jpeg) with 8-bit rounding"
    attack = build_attack(spec, diversity_at_input=False)
    assert isinstance(attack.update, type(build_attack(mifgsm(0.1)).update))
    assert isinstance(build_attack(ifgsm(0.1)).update, SignUpdate)


def test_group_trigger_compact_keeps_each_masks_largest_pixels_as_a_hard_stamp() -> None:
    budget = GroupTriggerBudget(torch.tensor([0, 1]), 2)
    param = budget.initial(torch.zeros(2, 3, 5, 5), gen())
    masks, patterns = budget.split(param)
    masks[0, 0, 1, 2], masks[0, 0, 4, 4], masks[1, 0, 0, 0] = 0.9, 0.7, 0.3
    stamps = budget.compact(param, pixels=2)
    kept, same = budget.split(stamps)
    assert torch.equal(same, patterns) and set(kept.unique().tolist()) == {0.0, 1.0}
    assert kept.flatten(1).sum(1).tolist() == [2.0, 2.0]
    assert kept[0, 0, 1, 2] == 1 and kept[0, 0, 4, 4] == 1 and kept[1, 0, 0, 0] == 1
    assert param.shape == stamps.shape and masks[0, 0, 1, 2] == 0.9  # the input is untouched
