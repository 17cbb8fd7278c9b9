"""AdvAmd's batch-norm handling: separate benign / mediate passes, clean statistics at export."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecloak.contract.augment import AugmentOptions
from workers.jobs.augment import datasets
from workers.jobs.augment.amend import Method, TrainSettings, finetune
from workers.jobs.augment.attack import attack_spec
from workers.jobs.augment.bench import amend_subset
from workers.jobs.augment.dual_bn import (
    DualBatchNorm,
    add_auxiliary_bn,
    auxiliary,
    main_bns,
    recalibrate,
)


def _first_bn_input(model: nn.Module, x: Tensor) -> Tensor:
    """What the first batch norm of a :class:`datasets.Normalised` net receives for ``x``."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        out: Tensor = conv((x - datasets.MEAN) / datasets.STD)
    return out


def _clean_mean(model: nn.Module, x: Tensor) -> Tensor:
    return _first_bn_input(model, x).mean(dim=(0, 2, 3))


def _stats(bn: nn.Module) -> tuple[Tensor, Tensor]:
    mean, var = bn.running_mean, bn.running_var
    assert isinstance(mean, Tensor) and isinstance(var, Tensor)
    return mean, var


def test_recalibrate_sets_the_main_statistics_from_clean_images_only() -> None:
    torch.manual_seed(0)
    model = datasets.Normalised(datasets.make_net(8, 3, width=2))
    add_auxiliary_bn(model)
    model.train()
    with auxiliary(model):
        model(torch.rand(16, 1, 8, 8))
    duals = [d for d in model.modules() if isinstance(d, DualBatchNorm)]
    aux_before = [_stats(d.aux)[0].clone() for d in duals]
    model(torch.rand(16, 1, 8, 8) + 3.0)  # main statistics far from the clean images
    x = torch.rand(40, 1, 8, 8)
    assert recalibrate(model, x, batch_size=64) == 3
    mean, var = _stats(main_bns(model)[0])
    assert torch.allclose(mean, _clean_mean(model, x), atol=1e-5)
    assert torch.allclose(var, _first_bn_input(model, x).var(dim=(0, 2, 3)), atol=1e-5)
    assert all(bn.momentum == 0.1 for bn in main_bns(model))
    assert all(torch.equal(_stats(d.aux)[0], b) for d, b in zip(duals, aux_before, strict=True))
    assert not model.training and not any(m.training for m in model.modules())


def test_recalibrate_leaves_other_layers_in_eval_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.9), nn.BatchNorm2d(2))
    x = torch.rand(8, 1, 6, 6)
    assert recalibrate(net, x, batch_size=8) == 1
    with torch.no_grad():
        expected = net[0](x).mean(dim=(0, 2, 3))  # without dropout
    assert torch.allclose(_stats(net[2])[0], expected, atol=1e-5)
    assert recalibrate(nn.Sequential(nn.Linear(2, 2)), torch.rand(4, 2)) == 0


def _setup() -> tuple[nn.Module, Tensor, Tensor]:
    x, y = datasets.digits(8)
    x, y = x[:128], y[:128]
    model = datasets.train(x, y, 10, seed=0, epochs=1)
    return model.requires_grad_(True), x, y


def test_amend_passes_benign_and_mediate_batches_separately() -> None:
    model, x, y = _setup()
    spec = attack_spec(AugmentOptions(steps=2))
    sizes: list[int] = []
    settings = TrainSettings(epochs=1, batch_size=32, phi=(0.3, 0.6))
    delta = 0.05 * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))
    first = main_bns(model)[0]  # kept as the main layer of its dual batch norm
    first.register_forward_hook(lambda _m, inp, _out: sizes.append(len(inp[0])))
    finetune(model, x, y, spec, settings, "amend", torch.ones(10), delta)
    assert sizes and max(sizes) == 32  # never benign and mediate in one batch


def test_amend_exports_clean_statistics_and_plain_does_not() -> None:
    spec = attack_spec(AugmentOptions(steps=2))
    settings = TrainSettings(epochs=1, batch_size=32)
    gaps = {}
    methods: tuple[Method, ...] = ("amend", "plain")
    for method in methods:
        model, x, y = _setup()
        delta = 0.1 * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))
        weights = torch.ones(10) if method == "amend" else None
        finetune(model, x, y, spec, settings, method, weights, delta)
        mean = _stats(main_bns(model)[0])[0]
        gaps[method] = float((mean - _clean_mean(model, x)).abs().max())
    assert gaps["amend"] < 1e-4 < gaps["plain"]


def test_amend_subset_is_a_fixed_share_of_the_training_split() -> None:
    tr = torch.arange(100, 200)
    sub = amend_subset(tr, seed=3, share=0.2)
    assert len(sub) == 20 and set(sub.tolist()) <= set(tr.tolist())
    assert torch.equal(sub, amend_subset(tr, seed=3, share=0.2))
    assert not torch.equal(sub, amend_subset(tr, seed=4, share=0.2))
