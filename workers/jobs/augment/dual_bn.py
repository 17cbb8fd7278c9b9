"""Auxiliary batch norms (AdvProp / AdvAmd): a second BN beside each BN of a model.

:func:`add_auxiliary_bn` replaces every batch-norm layer of a model, in place, with a
:class:`DualBatchNorm` holding the original (``main``) and a copy (``aux``);
:func:`auxiliary` routes a forward pass through the copies (adversarial samples),
:func:`recalibrate` re-estimates the main layers' running statistics on clean images, and
:func:`remove_auxiliary_bn` puts the main layers back (what is exported).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class DualBatchNorm(nn.Module):
    """``main`` or ``aux`` batch norm, as ``use_aux`` says."""

    def __init__(self, main: _BatchNorm) -> None:
        super().__init__()
        self.main = main
        self.aux = copy.deepcopy(main)
        self.use_aux = False

    def forward(self, x: Tensor) -> Tensor:
        """Normalise through the selected branch."""
        out: Tensor = (self.aux if self.use_aux else self.main)(x)
        return out


def _replace(model: nn.Module, kind: type[nn.Module], make: type[nn.Module] | None) -> int:
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, kind):
            if make is None:
                assert isinstance(child, DualBatchNorm)
                setattr(model, name, child.main)
            else:
                setattr(model, name, make(child))
            count += 1
        else:
            count += _replace(child, kind, make)
    return count


def add_auxiliary_bn(model: nn.Module) -> int:
    """Give every batch norm of ``model`` an auxiliary twin (in place); how many."""
    return _replace(model, _BatchNorm, DualBatchNorm)


def remove_auxiliary_bn(model: nn.Module) -> int:
    """Keep only the main batch norms (in place); how many were dual."""
    return _replace(model, DualBatchNorm, None)


@contextmanager
def auxiliary(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Within the block, ``model``'s dual batch norms use their auxiliary branch."""
    duals = [m for m in model.modules() if isinstance(m, DualBatchNorm)]
    before = [d.use_aux for d in duals]
    for d in duals:
        d.use_aux = on
    try:
        yield model
    finally:
        for d, was in zip(duals, before, strict=True):
            d.use_aux = was


def main_bns(model: nn.Module) -> list[_BatchNorm]:
    """The main layers of ``model``'s dual batch norms, or its plain batch norms if none."""
    duals = [m for m in model.modules() if isinstance(m, DualBatchNorm)]
    if duals:
        return [d.main for d in duals]
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def recalibrate(model: nn.Module, x: Tensor, batch_size: int = 256) -> int:
    """Replace the running mean/variance of :func:`main_bns` by their average over ``x``
    (batches of ``batch_size``, no gradients, other layers in eval mode); leaves ``model``
    in eval mode; how many layers were reset (0: nothing to do)."""
    bns = main_bns(model)
    if not bns or len(x) < 2:
        model.eval()
        return 0
    model.eval()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    size = max(batch_size, 2)
    with torch.no_grad():
        for start in range(0, len(x), size):
            chunk = x[start : start + size]
            if len(chunk) >= 2:
                model(chunk)
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    model.eval()
    return len(bns)
