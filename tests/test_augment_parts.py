"""The augment job's parts: auxiliary batch norms, A-bar, the held-out split, fine-tuning."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from facecloak.contract.augment import AugmentOptions
from workers.engine import CrossEntropy, TransformContext
from workers.jobs.augment import datasets
from workers.jobs.augment.amend import TrainSettings, finetune
from workers.jobs.augment.attack import attack_spec
from workers.jobs.augment.dual_bn import (
    DualBatchNorm,
    add_auxiliary_bn,
    auxiliary,
    remove_auxiliary_bn,
)
from workers.jobs.augment.modes import holdout_split
from workers.jobs.augment.vulnerability import a_bar_of


def test_auxiliary_batch_norms_route_and_learn_separately() -> None:
    torch.manual_seed(0)
    net = datasets.make_net(8, 3, width=2)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)]
    assert add_auxiliary_bn(net) == 3
    duals = [m for m in net.modules() if isinstance(m, DualBatchNorm)]
    assert [d.main for d in duals] == bns
    net.train()
    with auxiliary(net):
        net(torch.rand(8, 1, 8, 8) + 2.0)  # only the auxiliary statistics move
    assert all(float(d.main.running_mean.abs().sum()) == 0 for d in duals)
    assert all(float(d.aux.running_mean.abs().sum()) > 0 for d in duals)
    assert not any(d.use_aux for d in duals)
    net.eval()
    x = torch.rand(4, 1, 8, 8)
    with auxiliary(net):
        aux_out = net(x)
    assert not torch.allclose(aux_out, net(x))
    assert remove_auxiliary_bn(net) == 3
    assert not any(isinstance(m, DualBatchNorm) for m in net.modules())


def test_a_bar_weights_the_easily_attacked_classes_up() -> None:
    nan = float("nan")
    difficulty = torch.tensor([[0.0, 0.2, 0.2], [0.8, 0.0, 0.8], [nan, nan, 0.0]])
    a_bar = a_bar_of(difficulty)
    assert a_bar[0] > 1.0 > a_bar[1]
    assert float(a_bar[:2].mean()) == pytest.approx(1.0)
    assert float(a_bar[2]) == 1.0  # not measured


def test_holdout_split_takes_a_share_of_every_class() -> None:
    y = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    train, held = holdout_split(y, 0.2, seed=0)
    assert torch.bincount(y[held], minlength=3).tolist() == [2, 1, 0]
    assert sorted(torch.cat([train, held]).tolist()) == list(range(16))


@pytest.mark.parametrize("method", ["amend", "plain", "clean"])
def test_finetune_lowers_its_loss(method: str) -> None:
    x, y = datasets.digits(8)
    x, y = x[:200], y[:200]
    torch.manual_seed(0)
    model = datasets.train(x, y, 10, seed=0, epochs=2)
    spec = attack_spec(AugmentOptions(steps=3))
    weights: Tensor | None = torch.ones(10) if method == "amend" else None
    log = finetune(model, x, y, spec, TrainSettings(epochs=3), method, weights)  # type: ignore[arg-type]
    assert log.losses[-1] < log.losses[0]
    assert log.auxiliary_bn == (3 if method == "amend" else 0)
    assert not model.training


def test_cross_entropy_confidence_holds_samples_until_the_prediction_is_sure() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.5], [0.0, 4.0]])
    ctx = TransformContext.of_batch(3, label=torch.tensor([1, 1, 1]))
    assert CrossEntropy(targeted=True)(logits, ctx).done.tolist() == [False, True, True]
    sure = CrossEntropy(targeted=True, confidence=0.9)(logits, ctx)
    assert sure.done.tolist() == [False, False, True]
    away = CrossEntropy("label", confidence=0.8)(logits, TransformContext.of_batch(
        3, label=torch.tensor([0, 0, 0])))  # fmt: skip
    assert away.done.tolist() == [False, False, True]
    with pytest.raises(ValueError):
        CrossEntropy(confidence=1.0)
