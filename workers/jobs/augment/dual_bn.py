"""Auxiliary batch norms (AdvProp / AdvAmd): a second BN beside each BN of a model.

:func:`add_auxiliary_bn` replaces every batch-norm layer of a model, in place, with a
:class:`DualBatchNorm` holding the original (``main``) and a copy (``aux``);
:func:`auxiliary` routes a forward pass through the copies (adversarial samples), and
:func:`remove_auxiliary_bn` puts the main layers back (what is exported).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

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
