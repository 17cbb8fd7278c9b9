"""Optimisers: turn a loss gradient into the direction the attack steps along."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class UpdateRule(Protocol):
    """Maps the gradient of the active samples to a step direction.

    The attack calls ``reset()`` at the start of every run, then ``direction`` once per
    iteration with the gradient ``[b, ...]`` of the active samples and their indices ``[b]``
    into the full batch (samples that finish early drop out of later calls).
    """

    def reset(self) -> None: ...

    def direction(self, grad: Tensor, index: Tensor) -> Tensor: ...


class PerSampleState:
    """A tensor of state rows stored by sample index, grown on demand."""

    def __init__(self) -> None:
        self.rows: Tensor | None = None

    def get(self, like: Tensor, index: Tensor) -> Tensor:
        """The rows of ``index`` (zeros for samples never seen)."""
        size = int(index.max().item()) + 1 if index.numel() else 0
        rows = self.rows
        if rows is None or rows.shape[1:] != like.shape[1:]:
            rows = like.new_zeros((size, *like.shape[1:]))
        elif rows.shape[0] < size:
            grown = like.new_zeros((size, *like.shape[1:]))
            grown[: rows.shape[0]] = rows
            rows = grown
        self.rows = rows
        return rows[index]

    def set(self, index: Tensor, values: Tensor) -> None:
        """Store ``values`` as the rows of ``index`` (after ``get``)."""
        assert self.rows is not None
        self.rows[index] = values.detach()


class SignUpdate:
    """FGSM / I-FGSM: the sign of the gradient."""

    kind = "sign"

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

    kind = "momentum_sign"

    def __init__(self, decay: float = 1.0) -> None:
        self.decay = float(decay)
        self._velocity = PerSampleState()

    def reset(self) -> None:
        """Forget the accumulated gradient."""
        self._velocity = PerSampleState()

    def accumulate(self, grad: Tensor, index: Tensor) -> Tensor:
        """``g <- decay * g + grad / mean|grad|`` for samples ``index``; returns the new ``g``."""
        index = index.to(grad.device)
        reduce_dims = tuple(range(1, grad.dim()))
        scale = grad.abs().mean(dim=reduce_dims, keepdim=True).clamp_min(1e-12)
        updated = self.decay * self._velocity.get(grad, index) + grad / scale
        self._velocity.set(index, updated)
        return updated

    def direction(self, grad: Tensor, index: Tensor) -> Tensor:
        """Accumulate the normalised gradient of samples ``index`` and return its sign."""
        return self.accumulate(grad, index).sign()


class AdamUpdate:
    """Adam (Kingma & Ba) per sample: ``m_hat / (sqrt(v_hat) + eps)`` as the direction."""

    kind = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.reset()

    def reset(self) -> None:
        """Forget the moments and step counts."""
        self._m, self._v, self._t = PerSampleState(), PerSampleState(), PerSampleState()

    def direction(self, grad: Tensor, index: Tensor) -> Tensor:
        """The bias-corrected Adam step of samples ``index``."""
        index = index.to(grad.device)
        count = torch.ones((grad.shape[0],), device=grad.device, dtype=grad.dtype)
        t = self._t.get(count, index) + 1.0
        m = self.beta1 * self._m.get(grad, index) + (1.0 - self.beta1) * grad
        v = self.beta2 * self._v.get(grad, index) + (1.0 - self.beta2) * grad * grad
        self._t.set(index, t)
        self._m.set(index, m)
        self._v.set(index, v)
        shape = (-1, *([1] * (grad.dim() - 1)))
        m_hat = m / (1.0 - self.beta1 ** t.view(shape))
        v_hat = v / (1.0 - self.beta2 ** t.view(shape))
        return m_hat / (v_hat.sqrt() + self.eps)


class RmsUpdate(MomentumUpdate):
    """Momentum on the mean-abs-normalised gradient, stepped as ``g / rms(g)`` per sample.

    Unlike sign steps, which push every pixel by the full step and so fill any budget,
    the direction keeps the gradient's shape: pixels that matter move, the rest barely
    do. The step's root mean square is 1, so ``step_size`` keeps its meaning.
    """

    kind = "rms"

    def direction(self, grad: Tensor, index: Tensor) -> Tensor:
        """Accumulate the normalised gradient of samples ``index``; return it over its RMS."""
        updated = self.accumulate(grad, index)
        dims = tuple(range(1, grad.dim()))
        rms = updated.square().mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-12)
        return updated / rms
