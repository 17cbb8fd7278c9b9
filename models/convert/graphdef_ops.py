"""The GraphDef op table: each supported TensorFlow op -> a function emitting it.

Handlers take ``(front, node)`` and record the node's value in ``front``. Conv2D folds a
following BiasAdd, scalar Mul (the residual scale) and Relu into one ``nn.Conv2d`` (+
relu); MatMul folds its BiasAdd into an ``nn.Linear``; inference batch norms become a
folded affine.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.convert import runtime_ops as rt
from models.convert.fx_builder import FxBuilder, Padding, Value
from models.errors import UnsupportedOpError

if TYPE_CHECKING:
    from models.convert.graphdef_front import GraphDefFront
    from models.convert.graphdef_reader import NodeDef

__all__ = ["OPS"]

Handler = Callable[["GraphDefFront", "NodeDef"], None]
Emit = Callable[[FxBuilder, Any, Any], Value]  # emits a binary op on two operands
_NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # TF axis (NHWC) -> torch axis (NCHW)


def _tf_padding(front: GraphDefFront, node: NodeDef) -> Padding:
    padding = front.attr(node, "padding")
    if padding not in ("SAME", "VALID"):
        raise UnsupportedOpError(f"{node.op}(padding={padding})", node.name)
    return Padding.same_as(upper=True) if padding == "SAME" else Padding.valid(2)


def placeholder(front: GraphDefFront, node: NodeDef) -> None:
    if front.has_input:
        raise UnsupportedOpError("Placeholder (more than one input)", node.name)
    shape = front.attr(node, "shape")  # 4-D or unknown rank: the module takes NCHW
    layout = "nchw" if not isinstance(shape, list) or len(shape) == 4 else "tf"
    front.set(node.name, front.builder.placeholder("x"), layout)
    front.has_input = True


def identity(front: GraphDefFront, node: NodeDef) -> None:
    if front.const(node.name) is not None:
        return  # an alias of a constant, read through front.const
    front.values[node.name] = front.value(front.data_inputs(node)[0])


def _conv_epilogue(
    front: GraphDefFront, conv: NodeDef
) -> tuple[np.ndarray | None, float, bool, NodeDef]:
    """What folds into ``conv``: its BiasAdd, scalar Mul, Relu as (bias, scale, relu, last)."""
    bias, scale, relu, last = None, 1.0, False, conv
    user = front.only_consumer(last.name, "BiasAdd")
    if user is not None:
        value_in, bias_in = front.data_inputs(user)
        b = front.const(bias_in) if value_in == last.name else None
        if b is not None and front.attr(user, "data_format", "NHWC") == "NHWC":
            bias, last = b.astype(np.float32), user
    user = front.only_consumer(last.name, "Mul")
    if user is not None:
        x_in, y_in = front.data_inputs(user)
        other = y_in if x_in == last.name else x_in
        c = front.const(other) if other != last.name else None
        if c is not None and c.size == 1:
            scale, last = float(c.reshape(())), user
    user = front.only_consumer(last.name, "Relu")
    if user is not None:
        relu, last = True, user
    cur = conv
    while cur is not last:  # mark the fused chain
        cur = front.nodes[front.consumers[cur.name][0]]
        front.fused.add(cur.name)
    return bias, scale, relu, last


def conv2d(front: GraphDefFront, node: NodeDef) -> None:
    front.require_nhwc(node)
    src, weight_name = front.data_inputs(node)
    weight = front.need_const(weight_name, node).astype(np.float32, copy=False)  # HWIO
    strides = front.attr(node, "strides")["i"]
    dilations = front.attr(node, "dilations", {"i": [1, 1, 1, 1]}).get("i", [1, 1, 1, 1])
    padding = _tf_padding(front, node)
    bias, scale, relu, last = _conv_epilogue(front, node)
    w = np.array(weight.transpose(3, 2, 0, 1), dtype=np.float32, order="C")  # OIHW, one copy
    if scale != 1.0:
        w *= np.float32(scale)
    bias_t = None if bias is None else torch.from_numpy(bias * np.float32(scale))
    x = front.as_layout(src, "nchw")
    y = front.builder.conv(
        x,
        torch.from_numpy(w),
        bias_t,
        (strides[1], strides[2]),
        (dilations[1], dilations[2]),
        1,
        padding,
    )
    front.set(last.name, front.builder.call(torch.relu, y) if relu else y, "nchw")


def _unary(fn: Callable[..., Any], *args: Any) -> Handler:
    def handler(front: GraphDefFront, node: NodeDef) -> None:
        src = front.value(front.data_inputs(node)[0])
        front.set(node.name, front.builder.call(fn, src.node, *args), src.layout)

    return handler


def _call(fn: Callable[[Any, Any], Any]) -> Emit:
    def emit(b: FxBuilder, lhs: Any, rhs: Any) -> Value:
        return b.call(fn, lhs, rhs)

    return emit


def _maximum(b: FxBuilder, lhs: Any, rhs: Any) -> Value:
    """Element-wise maximum; a scalar operand makes it a ``clamp_min``."""
    if isinstance(lhs, float):
        return b.call(torch.clamp_min, rhs, lhs)
    if isinstance(rhs, float):
        return b.call(torch.clamp_min, lhs, rhs)
    return b.call(torch.maximum, lhs, rhs)


def _const_operand(front: GraphDefFront, node: NodeDef, const: np.ndarray, layout: str) -> Any:
    """A constant operand: a float when it has one element, else a tensor in ``layout``."""
    if const.size == 1 and const.ndim <= 1:
        return float(const.reshape(()))
    if layout == "nchw":
        if const.ndim > 4:
            raise UnsupportedOpError(f"{node.op} with a rank-{const.ndim} constant", node.name)
        const = const.reshape((1,) * (4 - const.ndim) + const.shape).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.array(const, dtype=np.float32, order="C"))


def _binary(emit: Emit) -> Handler:
    def handler(front: GraphDefFront, node: NodeDef) -> None:
        a, b = front.data_inputs(node)
        ca, cb = front.const(a), front.const(b)
        if ca is not None and cb is not None:
            raise UnsupportedOpError(f"{node.op} of two constants", node.name)
        if ca is None and cb is None:
            la, lb = front.value(a).layout, front.value(b).layout
            layout = la if la == lb else "tf"
            lhs, rhs = front.as_layout(a, layout), front.as_layout(b, layout)
        elif ca is not None:
            layout = front.value(b).layout
            lhs, rhs = _const_operand(front, node, ca, layout), front.value(b).node
        else:
            assert cb is not None
            layout = front.value(a).layout
            lhs, rhs = front.value(a).node, _const_operand(front, node, cb, layout)
        front.set(node.name, emit(front.builder, lhs, rhs), layout)

    return handler


def concat_v2(front: GraphDefFront, node: NodeDef) -> None:
    names = front.data_inputs(node)
    axis = int(front.need_const(names[-1], node))
    layouts = {front.value(n).layout for n in names[:-1]}
    layout = "nchw" if layouts == {"nchw"} else "tf"
    if layout == "nchw":
        axis = _NHWC_TO_NCHW_AXIS[axis % 4]
    parts = [front.as_layout(n, layout) for n in names[:-1]]
    front.set(node.name, front.builder.call(torch.cat, parts, axis), layout)


def _pool(kind: str) -> Handler:
    def handler(front: GraphDefFront, node: NodeDef) -> None:
        front.require_nhwc(node)
        ksize, strides = front.attr(node, "ksize")["i"], front.attr(node, "strides")["i"]
        if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
            raise UnsupportedOpError(f"{node.op} over batch or channels", node.name)
        padding = _tf_padding(front, node)
        x = front.as_layout(front.data_inputs(node)[0], "nchw")
        kernel, stride = (ksize[1], ksize[2]), (strides[1], strides[2])
        b = front.builder
        if kind == "max":
            y = b.max_pool(x, kernel, stride, (1, 1), padding, ceil_mode=False)
        else:  # TensorFlow's SAME average counts only real pixels
            y = b.avg_pool(x, kernel, stride, padding, ceil_mode=False, count_include_pad=False)
        front.set(node.name, y, "nchw")

    return handler


def reshape(front: GraphDefFront, node: NodeDef) -> None:
    src, shape_name = front.data_inputs(node)
    shape = [int(v) for v in front.need_const(shape_name, node).reshape(-1)]
    x = front.as_layout(src, "tf")
    # Frozen graphs bake the placeholder's batch size into reshape targets ([1, -1]);
    # the leading dimension is kept as the batch, as OpenCV's reader does.
    front.set(node.name, front.builder.call(rt.reshape_keep_batch, x, shape[1:]), "tf")


def matmul(front: GraphDefFront, node: NodeDef) -> None:
    a, b = front.data_inputs(node)
    if front.attr(node, "transpose_a", False):
        raise UnsupportedOpError("MatMul(transpose_a)", node.name)
    weight = front.need_const(b, node)
    if not front.attr(node, "transpose_b", False):
        weight = weight.T  # (in, out) -> (out, in)
    bias, last = None, node
    user = front.only_consumer(node.name, "BiasAdd")
    if user is not None:
        c = front.const(front.data_inputs(user)[1])
        if c is not None:
            bias, last = torch.from_numpy(np.array(c, dtype=np.float32, order="C")), user
            front.fused.add(user.name)
    weight_t = torch.from_numpy(np.array(weight, dtype=np.float32, order="C"))
    front.set(last.name, front.builder.linear(front.as_layout(a, "tf"), weight_t, bias), "tf")


def fused_batch_norm(front: GraphDefFront, node: NodeDef) -> None:
    front.require_nhwc(node)
    if front.attr(node, "is_training", True):
        raise UnsupportedOpError(f"{node.op}(is_training=True)", node.name)
    src_name, *rest = front.data_inputs(node)
    gamma, beta, mean, var = (front.need_const(n, node).astype(np.float64) for n in rest[:4])
    eps = float(front.attr(node, "epsilon", 1e-3))
    mult = gamma / np.sqrt(var + eps)
    shift = beta - mean * mult
    src = front.value(src_name)
    shape = (1, -1, 1, 1) if src.layout == "nchw" else (-1,)
    mult_t, shift_t = (
        torch.from_numpy(np.array(v.reshape(shape), dtype=np.float32)) for v in (mult, shift)
    )
    front.set(node.name, front.builder.call(rt.affine, src.node, mult_t, shift_t), src.layout)


def _reduce(fn: Callable[..., Any]) -> Handler:
    def handler(front: GraphDefFront, node: NodeDef) -> None:
        src_name, axes_name = front.data_inputs(node)
        axes = [int(a) for a in front.need_const(axes_name, node).reshape(-1)]
        keep = bool(front.attr(node, "keep_dims", False))
        layout = front.value(src_name).layout
        if layout == "nchw" and keep:
            axes = [_NHWC_TO_NCHW_AXIS[a % 4] for a in axes]
        elif layout == "nchw":  # the result is no longer NCHW: reduce in TF layout
            layout = "tf"
        x = front.as_layout(src_name, layout)
        front.set(node.name, front.builder.call(fn, x, dim=axes, keepdim=keep), layout)

    return handler


OPS: dict[str, Handler] = {
    "Placeholder": placeholder, "Identity": identity, "Conv2D": conv2d,
    "BiasAdd": _binary(_call(operator.add)), "Relu": _unary(torch.relu),
    "Relu6": _unary(torch.clamp, 0.0, 6.0), "ConcatV2": concat_v2,
    "Mul": _binary(_call(operator.mul)), "Add": _binary(_call(operator.add)),
    "AddV2": _binary(_call(operator.add)), "Sub": _binary(_call(operator.sub)),
    "Maximum": _binary(_maximum), "MaxPool": _pool("max"), "AvgPool": _pool("avg"),
    "Reshape": reshape, "MatMul": matmul, "FusedBatchNorm": fused_batch_norm,
    "FusedBatchNormV3": fused_batch_norm, "Square": _unary(torch.square),
    "Sum": _reduce(torch.sum), "Mean": _reduce(torch.mean), "Rsqrt": _unary(torch.rsqrt),
    "Sqrt": _unary(torch.sqrt),
}  # fmt: skip
