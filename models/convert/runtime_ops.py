"""What converted graphs call at run time: helper functions, module kinds, the function table.

Generated ``torch.fx`` code references these helpers by their module path, so they must
stay module-level. ``FUNCTIONS`` names every callable a converted graph may contain; the
cache format (``fx_payload``) stores those names instead of pickled code.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FUNCTIONS", "MODULE_KINDS", "BatchNorm", "PRelu", "make_module"]


def flatten(x: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Flatten: a 2-D view splitting the dims at ``axis``."""
    if axis < 0:
        axis += x.dim()
    if axis == 1 and x.dim() >= 2:
        return torch.flatten(x, 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


def reshape_keep_zeros(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """ONNX Reshape with ``allowzero=0``: a 0 copies the input's dimension."""
    return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])


def reshape_keep_batch(x: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """Reshape the dims after the batch dim (frozen graphs bake a batch of 1 into targets)."""
    return x.reshape(x.shape[0], *shape)


def transpose_reverse(x: torch.Tensor) -> torch.Tensor:
    """ONNX Transpose without ``perm``: reverse every dim."""
    return x.permute(*reversed(range(x.dim())))


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Mean over the spatial dims, kept as size-1 dims."""
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def affine(x: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """An inference-mode batch norm folded to ``x * mult + shift``."""
    return x * mult + shift


def same_pads(
    x: torch.Tensor, kernel: tuple[int, ...], strides: tuple[int, ...], upper: bool
) -> list[int]:
    """``F.pad`` pads for ``SAME`` padding of the spatial dims (``kernel`` already dilated).

    ``upper`` puts the odd pixel after (TensorFlow's SAME, ONNX SAME_UPPER).
    """
    torch_pads: list[int] = []
    spatial = x.shape[2:]
    for i in reversed(range(len(kernel))):
        size = int(spatial[i])
        out = -(-size // strides[i])
        total = max(0, (out - 1) * strides[i] + kernel[i] - size)
        small, big = total // 2, total - total // 2
        torch_pads += [small, big] if upper else [big, small]
    return torch_pads


def same_pad(
    x: torch.Tensor, kernel: tuple[int, ...], strides: tuple[int, ...], upper: bool, value: float
) -> torch.Tensor:
    """Pad the spatial dims for ``SAME`` padding, computed from the input's size."""
    return F.pad(x, same_pads(x, kernel, strides, upper), value=value)


def avg_pool2d_excluding_pad(
    x: torch.Tensor, kernel: tuple[int, int], strides: tuple[int, int], pads: list[int] | None
) -> torch.Tensor:
    """2-D average pool whose windows count only real pixels (TensorFlow's SAME average).

    ``pads`` are ``F.pad`` pads, or None for SAME padding computed from the input's size.
    """
    if pads is None:
        pads = same_pads(x, kernel, strides, upper=True)
    if not any(pads):
        return F.avg_pool2d(x, kernel, strides)
    total = F.avg_pool2d(F.pad(x, pads), kernel, strides, divisor_override=1)
    ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    count = F.avg_pool2d(F.pad(ones, pads), kernel, strides, divisor_override=1)
    return total / count


def gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor | None,
    alpha: float,
    beta: float,
    trans_a: bool,
    trans_b: bool,
) -> torch.Tensor:
    """ONNX Gemm in general form (when it cannot become an ``nn.Linear``)."""
    if trans_a:
        a = a.t()
    if trans_b:
        b = b.t()
    y = torch.mm(a, b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


class _PreluInputGrad(torch.autograd.Function):
    """Per-channel PReLU whose backward gives the input's gradient only, with float ops.

    The slope is a frozen buffer, so its gradient is never needed; ATen's PReLU backward
    computes it anyway and goes through boolean masks, which this CPU build runs 4-8x
    slower than float arithmetic (a third of a MobileFaceNet's backward pass).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        slope = weight.view([1, -1] + [1] * (x.dim() - 2))
        positive = torch.relu(x).sign_()  # 1 where x > 0, else 0
        ctx.save_for_backward(positive.mul_(1.0 - slope).add_(slope))  # dy/dx
        return F.prelu(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (derivative,) = ctx.saved_tensors
        return grad * derivative, None


class PRelu(nn.Module):
    """ONNX PRelu: ``slope`` broadcasts numpy-style; uses ``F.prelu`` when it is per-channel
    (with an input-only backward when a gradient is wanted; never while tracing)."""

    slope: torch.Tensor
    weight: torch.Tensor

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("slope", torch.empty(shape))
        self.register_buffer("weight", torch.empty(math.prod(shape)))
        dims = list(shape)
        while dims and dims[0] == 1 and len(dims) > 1:
            dims.pop(0)
        if math.prod(shape) == 1:
            self.fast_rank = -1  # any rank
        elif all(s == 1 for s in dims[1:]):
            self.fast_rank = len(dims) + 1  # slope [C, 1, ..., 1] aligns with dim 1
        else:
            self.fast_rank = 0  # never

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_rank == -1 or x.dim() == self.fast_rank:
            wanted = x.requires_grad and torch.is_grad_enabled() and x.dim() >= 2
            if wanted and not torch.jit.is_tracing():
                return _PreluInputGrad.apply(x, self.weight)
            return F.prelu(x, self.weight)
        return torch.where(x >= 0, x, x * self.slope)


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over dim 1 of an input of any rank >= 2 (ONNX BatchNormalization).

    A trainable conversion keeps BN as this module: in train mode it normalises with the
    batch statistics and updates the running ones; it exports back as BatchNormalization.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"BatchNorm expects an input of rank >= 2, got {input.dim()}")


MODULE_KINDS: dict[str, Callable[..., nn.Module]] = {
    "conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d, "linear": nn.Linear,
    "maxpool1d": nn.MaxPool1d, "maxpool2d": nn.MaxPool2d, "maxpool3d": nn.MaxPool3d,
    "avgpool1d": nn.AvgPool1d, "avgpool2d": nn.AvgPool2d, "avgpool3d": nn.AvgPool3d,
    "prelu": PRelu, "batchnorm": BatchNorm,
}  # fmt: skip


def make_module(kind: str, config: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """A frozen eval-mode module of ``kind`` built on the meta device, taking ``state`` as is."""
    with torch.device("meta"):
        module = MODULE_KINDS[kind](**config)
    module.load_state_dict(state, assign=True)
    return module.requires_grad_(False).eval()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "ge": operator.ge, "relu": torch.relu, "sigmoid": torch.sigmoid, "clamp": torch.clamp,
    "clamp_min": torch.clamp_min, "maximum": torch.maximum, "where": torch.where,
    "square": torch.square, "rsqrt": torch.rsqrt, "sqrt": torch.sqrt, "sum": torch.sum,
    "mean": torch.mean, "cat": torch.cat, "permute": torch.permute, "reshape": torch.reshape,
    "matmul": torch.matmul, "t": torch.t, "pad": F.pad, "batch_norm": F.batch_norm,
    "leaky_relu": F.leaky_relu, "flatten": flatten, "reshape_keep_zeros": reshape_keep_zeros,
    "reshape_keep_batch": reshape_keep_batch, "transpose_reverse": transpose_reverse,
    "global_avg_pool": global_avg_pool, "affine": affine, "same_pad": same_pad,
    "avg_pool2d_excluding_pad": avg_pool2d_excluding_pad, "gemm": gemm,
}  # fmt: skip
