"""Update rules: turn a loss gradient into a step direction."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class UpdateRule(Protocol):
    """Maps the gradient of the active samples to the direction the attack steps along.

    The attack calls ``reset()`` at the start of every run, then ``direction`` once per
    iteration with the gradient ``[b, ...]`` of the active samples and their indices ``[b]``
    into the full batch (samples that finish early drop out of later calls).
    """

    def reset(self) -> None: ...

    def direction(self, grad: Tensor, index: Tensor) -> Tensor: ...


class SignUpdate:
    """FGSM / I-FGSM: the sign of the gradient."""

    def reset(self) -> None:
        """Nothing to reset: the rule is stateless."""

    def direction(self, grad: Tensor, index: Tensor) -> Tensor:
        """``sign(grad)``."""
        return grad.sign()


class MomentumUpdate:
    """MI-FGSM: ``g <- decay * g + grad / mean|grad|`` per sample, direction ``sign(g)``.

    The accumulated ``g`` is stored per sample index, so samples may leave the batch
    between iterations without disturbing the others.
    """

    def __init__(self, decay: float = 1.0) -> None:
        self.decay = float(decay)
        self._velocity: Tensor | None = None

    def reset(self) -> None:
        """Forget the accumulated gradient."""
        self._velocity = None

    def direction(self, grad: Tensor, index: Tensor) -> Tensor:
        """Accumulate the normalised gradient of samples ``index`` and return its sign."""
        index = index.to(grad.device)
        size = int(index.max().item()) + 1 if index.numel() else 0
        velocity = self._velocity
        if velocity is None or velocity.shape[1:] != grad.shape[1:]:
            velocity = grad.new_zeros((size, *grad.shape[1:]))
        elif velocity.shape[0] < size:
            grown = grad.new_zeros((size, *grad.shape[1:]))
            grown[: velocity.shape[0]] = velocity
            velocity = grown
        reduce_dims = tuple(range(1, grad.dim()))
        scale = grad.abs().mean(dim=reduce_dims, keepdim=True).clamp_min(1e-12)
        updated = self.decay * velocity[index] + grad / scale
        velocity[index] = updated.detach()
        self._velocity = velocity
        return updated.sign()
