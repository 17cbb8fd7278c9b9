"""Adversarial Amendment (AdvAmd) fine-tuning, and plain adversarial training to compare with.

AdvAmd trains a copy of the model with an auxiliary batch norm beside each batch norm on

    beta1 * CE_w(benign) + beta2 * CE_w(mediate)     (main batch norms)
    + beta3 * CE_w(adversarial)                       (auxiliary batch norms)

where mediate samples ``x + phi * delta`` keep the clean label and ``CE_w`` weights each
class by its vulnerability A-bar. Benign and mediate batches pass the main batch norms
separately (each normalised by its own statistics); after training the main batch norms'
running statistics are re-estimated on the benign images alone (:func:`dual_bn.recalibrate`),
as the exported model sees clean images. Training uses the attack stage's adversarial
samples; with ``refresh`` every epoch after the first re-attacks the model being trained
(through its auxiliary batch norms) instead. Plain adversarial training is
``CE(benign) + CE(adversarial)`` through the same batch norms, unweighted, without mediate
samples and without re-estimation; ``clean`` fine-tunes on the benign samples alone (the
control).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine import AttackSpec
from workers.jobs.augment.attack import attack, mediate, quantised
from workers.jobs.augment.dual_bn import add_auxiliary_bn, auxiliary, recalibrate

Method = Literal["amend", "plain", "clean"]


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning: epochs, Adam learning rate, batch size, loss weights, mediate phis."""

    epochs: int = 6
    lr: float = 2e-3
    batch_size: int = 64
    betas: tuple[float, float, float] = (1.0, 1.0, 1.0)
    phi: tuple[float, ...] = (0.5,)
    refresh: bool = False
    seed: int = 0


@dataclass
class TrainLog:
    """Mean loss of each epoch and how many batch norms got an auxiliary twin."""

    losses: list[float] = field(default_factory=list)
    auxiliary_bn: int = 0


def _adversarial(
    model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, aux: bool, seed: int
) -> Tensor:
    model.eval()
    with auxiliary(model, aux):
        return attack(model, x, y, spec, seed=seed).delta


def finetune(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: AttackSpec,
    settings: TrainSettings,
    method: Method = "amend",
    weights: Tensor | None = None,
    delta: Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainLog:
    """Fine-tune ``model`` (trainable, in place) on ``x``/``y``; ``delta``: the attack
    stage's changes for the first epoch (computed here when None). For ``amend`` the model
    keeps its dual batch norms; :func:`dual_bn.remove_auxiliary_bn` strips them.
    """
    log = TrainLog()
    amend = method == "amend"
    if amend:
        log.auxiliary_bn = add_auxiliary_bn(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    opt = torch.optim.Adam(params, lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    b1, b2, b3 = settings.betas
    w = weights if amend else None
    for epoch in range(settings.epochs):
        if method == "clean":
            delta = torch.zeros_like(x)
        elif delta is None or (epoch > 0 and settings.refresh):
            delta = _adversarial(model, x, y, spec, amend, settings.seed + epoch)
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total, batches = 0.0, 0
        for start in range(0, len(x), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            xb, yb, db = x[idx], y[idx], delta[idx]
            adv = quantised(xb + db)
            if amend:  # benign and each mediate batch: own passes, own BN batch statistics
                loss = b1 * F.cross_entropy(model(xb), yb, weight=w)
                for phi in settings.phi:
                    part = model(mediate(xb, db, phi))
                    loss = loss + b2 / len(settings.phi) * F.cross_entropy(part, yb, weight=w)
                with auxiliary(model):
                    loss = loss + b3 * F.cross_entropy(model(adv), yb, weight=w)
            elif method == "plain":
                loss = F.cross_entropy(model(xb), yb) + F.cross_entropy(model(adv), yb)
            else:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, batches = total + float(loss.detach()), batches + 1
        log.losses.append(total / max(batches, 1))
        if progress is not None:
            progress(epoch + 1, settings.epochs)
    if amend:
        recalibrate(model, x, settings.batch_size)
    model.eval()
    return log


def train_plain(
    make: Callable[[], nn.Module],
    x: Tensor,
    y: Tensor,
    epochs: int,
    seed: int,
    lr: float = 1e-2,
    batch_size: int = 64,
) -> nn.Module:
    """A fresh ``make()`` model trained on clean ``x``/``y`` (the bench's recipe)."""
    torch.manual_seed(seed)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
