"""The ONNX op table: each supported op type -> a function emitting it through the builder.

Handlers take ``(front, node, attrs)`` and return the node's output value(s). An op, or an
attribute combination, outside what is handled raises ``UnsupportedOpError`` naming it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import fx

from models.convert import runtime_ops as rt
from models.convert.fx_builder import Padding, Value
from models.errors import UnsupportedOpError

if TYPE_CHECKING:
    from models.convert.onnx_front import OnnxFront

__all__ = ["DEFAULT_DOMAINS", "OPS", "SUPPORTED_OPS", "node_attrs", "node_label"]

DEFAULT_DOMAINS = ("", "ai.onnx")
Attrs = dict[str, Any]
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def node_attrs(node: onnx.NodeProto) -> Attrs:
    """The node's attributes as Python values (strings decoded)."""
    out: Attrs = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def node_label(node: onnx.NodeProto) -> str:
    """How errors name a node: its name, else its first output."""
    return node.name or (node.output[0] if node.output else "")


def _scalar_or_tensor(value: Value) -> Value:
    """A one-element float constant as a Python float (cheaper to broadcast)."""
    if (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and value.numel() == 1
        and value.dim() <= 1
    ):
        return float(value.reshape(()).item())
    return value


def _padding(node: onnx.NodeProto, a: Attrs, rank: int) -> Padding:
    """``pads`` / ``auto_pad`` as a ``Padding``."""
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return Padding.same_as(upper=auto_pad == "SAME_UPPER")
    if auto_pad == "VALID":
        return Padding.valid(rank)
    if auto_pad == "NOTSET":
        pads = [int(p) for p in a.get("pads", [0] * (2 * rank))]
        return Padding.explicit(tuple(pads[:rank]), tuple(pads[rank:]))
    raise UnsupportedOpError(f"{node.op_type}(auto_pad={auto_pad})", node_label(node))


# ---------------------------------------------------------------- layers with weights


def conv(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    x = front.get(node.input[0])
    weight = front.const(node, 1, "weight")
    assert weight is not None
    bias = front.const(node, 2, "bias")
    k = weight.dim() - 2
    if k not in (1, 2, 3):
        raise UnsupportedOpError(f"Conv{k}d", node_label(node))
    weight64 = weight.double()
    bias64 = bias.double() if bias is not None else None
    bn = front.foldable_bn(node.output[0])
    if bn is not None:
        scale, shift = front.bn_affine(bn)
        weight64 = weight64 * scale.reshape(-1, *([1] * (k + 1)))
        bias64 = (bias64 if bias64 is not None else 0.0) * scale + shift
    out = front.builder.conv(
        x,
        weight64.to(weight.dtype),
        bias64.to(weight.dtype) if bias64 is not None else None,
        tuple(a.get("strides", [1] * k)),
        tuple(a.get("dilations", [1] * k)),
        int(a.get("group", 1)),
        _padding(node, a, k),
    )
    if bn is not None:
        front.values[bn.output[0]] = out
    return out


def _linear_params(
    x: Value, b: Value, c: Value, alpha: float, beta: float, trans_b: bool
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Float64 ``(weight [out, in], bias)`` when a Gemm can be an ``nn.Linear``."""
    if not (isinstance(b, torch.Tensor) and b.dim() == 2 and isinstance(x, fx.Node)):
        return None
    weight = (b if trans_b else b.t()).double() * alpha
    n_out = weight.shape[0]
    if c is None:
        return weight, None
    if not isinstance(c, torch.Tensor) or c.numel() not in (1, n_out) or c.dim() > 2:
        return None
    if c.dim() == 2 and c.shape[0] != 1:
        return None
    return weight, c.double().reshape(-1).expand(n_out) * beta


def gemm(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    x = front.get(node.input[0])
    b = front.get(node.input[1])
    c = front.get(node.input[2]) if len(node.input) > 2 else None
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    trans_a, trans_b = bool(a.get("transA", 0)), bool(a.get("transB", 0))
    params = _linear_params(x, b, c, alpha, beta, trans_b)
    if params is None:
        return front.builder.call(rt.gemm, x, b, c, alpha, beta, trans_a, trans_b)
    weight, bias = params
    bn = front.foldable_bn(node.output[0])
    if bn is not None:
        scale, shift = front.bn_affine(bn)
        weight = weight * scale[:, None]
        bias = (bias if bias is not None else 0.0) * scale + shift
    if trans_a:
        x = front.builder.call(torch.t, x)
    bias_t = bias.to(b.dtype).contiguous() if bias is not None else None
    out = front.builder.linear(x, weight.to(b.dtype).contiguous(), bias_t)
    if bn is not None:
        front.values[bn.output[0]] = out
    return out


def batch_normalization(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    if any(o for o in node.output[1:]):
        raise UnsupportedOpError("BatchNormalization (training outputs)", node_label(node))
    if a.get("spatial", 1) != 1:
        raise UnsupportedOpError("BatchNormalization(spatial=0)", node_label(node))
    x = front.get(node.input[0])
    gamma, beta, mean, var = (front.get(n) for n in node.input[1:5])
    eps = float(a.get("epsilon", 1e-5))
    params = (gamma, beta, mean, var)
    if front.trainable and all(isinstance(p, torch.Tensor) and p.dim() == 1 for p in params):
        state = {
            "weight": gamma.detach().clone(), "bias": beta.detach().clone(),
            "running_mean": mean.detach().clone(), "running_var": var.detach().clone(),
            "num_batches_tracked": torch.tensor(0, dtype=torch.long),
        }  # fmt: skip
        momentum = 1.0 - float(a.get("momentum", 0.9))  # ONNX keeps, torch takes, a share
        return front.builder.add_module(
            "batchnorm", "bn", x, state, num_features=int(gamma.numel()), eps=eps,
            momentum=momentum,
        )  # fmt: skip
    return front.builder.call(F.batch_norm, x, mean, var, gamma, beta, False, 0.0, eps)


def prelu(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    x = front.get(node.input[0])
    slope = front.get(node.input[1])
    b = front.builder
    if isinstance(slope, torch.Tensor):
        state = {"slope": slope.clone(), "weight": slope.reshape(-1).clone()}
        return b.add_module("prelu", "prelu", x, state, shape=tuple(slope.shape))
    return b.call(torch.where, b.call(operator.ge, x, 0), x, b.call(operator.mul, x, slope))


# ---------------------------------------------------------------- pooling


def _pool_geometry(
    node: onnx.NodeProto, a: Attrs
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    kernel = tuple(int(s) for s in a["kernel_shape"])
    k = len(kernel)
    if k not in (1, 2, 3):
        raise UnsupportedOpError(f"{node.op_type}{k}d", node_label(node))
    strides = tuple(int(s) for s in a.get("strides", [1] * k))
    dilations = tuple(int(s) for s in a.get("dilations", [1] * k))
    return kernel, strides, dilations


def max_pool(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedOpError("MaxPool (indices output)", node_label(node))
    kernel, strides, dilations = _pool_geometry(node, a)
    padding = _padding(node, a, len(kernel))
    x = front.get(node.input[0])
    ceil_mode = bool(a.get("ceil_mode", 0))
    return front.builder.max_pool(x, kernel, strides, dilations, padding, ceil_mode)


def average_pool(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    kernel, strides, dilations = _pool_geometry(node, a)
    if any(d != 1 for d in dilations):
        raise UnsupportedOpError("AveragePool (dilations)", node_label(node))
    include_pad = bool(a.get("count_include_pad", 0))
    padding = _padding(node, a, len(kernel))
    if not include_pad and not front.builder.avg_pool_fits_layer(kernel, strides, padding):
        raise UnsupportedOpError(
            "AveragePool (asymmetric pads without count_include_pad)", node_label(node)
        )
    x = front.get(node.input[0])
    ceil_mode = bool(a.get("ceil_mode", 0))
    return front.builder.avg_pool(x, kernel, strides, padding, ceil_mode, include_pad)


def global_average_pool(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    return front.builder.call(rt.global_avg_pool, front.get(node.input[0]))


# ---------------------------------------------------------------- element-wise


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[OnnxFront, onnx.NodeProto, Attrs], Value]:
    def handler(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
        lhs, rhs = front.get(node.input[0]), front.get(node.input[1])
        if isinstance(lhs, fx.Node) or isinstance(rhs, fx.Node):
            lhs, rhs = _scalar_or_tensor(lhs), _scalar_or_tensor(rhs)
        return front.builder.call(fn, lhs, rhs)

    return handler


def _const_div(a: Any, b: Any) -> Any:
    both_int = all(isinstance(v, torch.Tensor) and not v.is_floating_point() for v in (a, b))
    return torch.div(a, b, rounding_mode="trunc") if both_int else operator.truediv(a, b)


def div(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    lhs, rhs = front.get(node.input[0]), front.get(node.input[1])
    if not isinstance(lhs, fx.Node) and not isinstance(rhs, fx.Node):
        return _const_div(lhs, rhs)
    return _binary(operator.truediv)(front, node, a)


def _unary(fn: Callable[..., Any]) -> Callable[[OnnxFront, onnx.NodeProto, Attrs], Value]:
    def handler(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
        return front.builder.call(fn, front.get(node.input[0]))

    return handler


def leaky_relu(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    alpha = float(a.get("alpha", 0.01))
    return front.builder.call(F.leaky_relu, front.get(node.input[0]), alpha)


def clip(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    x = front.get(node.input[0])
    lo: float | None = a.get("min")
    hi: float | None = a.get("max")
    for index, slot in ((1, "min"), (2, "max")):
        if index < len(node.input) and node.input[index]:
            bound = front.const(node, index, slot)
            assert bound is not None
            value = float(bound.reshape(()).item())
            lo, hi = (value, hi) if slot == "min" else (lo, value)
    if lo is None and hi is None:
        return x
    return front.builder.call(torch.clamp, x, lo, hi)


def identity(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    return front.get(node.input[0])


def dropout(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    if len(node.output) > 1 and node.output[1] and front.consumers.get(node.output[1]):
        raise UnsupportedOpError("Dropout (mask output)", node_label(node))
    return front.get(node.input[0])


def constant(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    if "value" in a:
        return torch.from_numpy(np.array(numpy_helper.to_array(a["value"]), copy=True))
    for key, dtype in (
        ("value_float", torch.float32),
        ("value_floats", torch.float32),
        ("value_int", torch.int64),
        ("value_ints", torch.int64),
    ):
        if key in a:
            return torch.tensor(a[key], dtype=dtype)
    raise UnsupportedOpError(f"Constant({', '.join(a) or 'empty'})", node_label(node))


# ---------------------------------------------------------------- shapes


def flatten(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    return front.builder.call(rt.flatten, front.get(node.input[0]), int(a.get("axis", 1)))


def reshape(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    x = front.get(node.input[0])
    shape_t = front.const(node, 1, "shape")
    assert shape_t is not None
    shape = tuple(int(s) for s in shape_t.reshape(-1).tolist())
    if 0 in shape and not a.get("allowzero", 0):
        return front.builder.call(rt.reshape_keep_zeros, x, shape)
    return front.builder.call(torch.reshape, x, shape)


def transpose(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    x = front.get(node.input[0])
    if "perm" not in a:
        return front.builder.call(rt.transpose_reverse, x)
    return front.builder.call(torch.permute, x, tuple(int(p) for p in a["perm"]))


def concat(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    parts = [front.get(n) for n in node.input if n]
    return front.builder.call(torch.cat, parts, int(a["axis"]))


def matmul(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    lhs, rhs = front.get(node.input[0]), front.get(node.input[1])
    return front.builder.call(torch.matmul, lhs, rhs)


def _pad_amounts(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> tuple[list[int], float]:
    """ONNX pads ``[begins..., ends...]`` over all dims and the constant value."""
    if "pads" in a:
        pads = [int(p) for p in a["pads"]]
        value = float(a.get("value", 0.0))
    else:
        pads_t = front.const(node, 1, "pads")
        assert pads_t is not None
        pads = [int(p) for p in pads_t.reshape(-1).tolist()]
        value_t = front.const(node, 2, "constant_value") if len(node.input) > 2 else None
        value = float(value_t.reshape(()).item()) if value_t is not None else 0.0
    axes_t = front.const(node, 3, "axes") if len(node.input) > 3 else None
    if axes_t is None:
        return pads, value
    n = len(pads) // 2
    axes = [int(v) for v in axes_t.reshape(-1).tolist()]
    if any(ax < 0 for ax in axes):
        raise UnsupportedOpError("Pad (negative axes)", node_label(node))
    rank = max(axes) + 1
    full = [0] * (2 * rank)
    for i, ax in enumerate(axes):
        full[ax], full[rank + ax] = pads[i], pads[n + i]
    return full, value


def pad(front: OnnxFront, node: onnx.NodeProto, a: Attrs) -> Value:
    x = front.get(node.input[0])
    mode = a.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise UnsupportedOpError(f"Pad(mode={mode})", node_label(node))
    pads, value = _pad_amounts(front, node, a)
    n = len(pads) // 2
    torch_pads: list[int] = []
    for i in reversed(range(n)):
        torch_pads += [pads[i], pads[n + i]]
    while torch_pads and torch_pads[-2:] == [0, 0]:  # leading dims without padding
        torch_pads = torch_pads[:-2]
    if not torch_pads:
        return x
    if mode == "constant":
        return front.builder.call(F.pad, x, torch_pads, value=value)
    return front.builder.call(F.pad, x, torch_pads, mode=_PAD_MODES[mode])


OPS: dict[str, Callable[[OnnxFront, onnx.NodeProto, Attrs], Value]] = {
    "Add": _binary(operator.add), "AveragePool": average_pool,
    "BatchNormalization": batch_normalization, "Clip": clip, "Concat": concat,
    "Constant": constant, "Conv": conv, "Div": div, "Dropout": dropout, "Flatten": flatten,
    "Gemm": gemm, "GlobalAveragePool": global_average_pool, "Identity": identity,
    "LeakyRelu": leaky_relu, "MatMul": matmul, "MaxPool": max_pool,
    "Mul": _binary(operator.mul), "Pad": pad, "PRelu": prelu, "Relu": _unary(torch.relu),
    "Reshape": reshape, "Sigmoid": _unary(torch.sigmoid), "Sub": _binary(operator.sub),
    "Transpose": transpose,
}  # fmt: skip
SUPPORTED_OPS: frozenset[str] = frozenset(OPS)
