"""A small ONNX -> PyTorch converter for face-recognition style CNNs.

``convert_onnx`` turns an ONNX graph into a ``torch.fx`` module built from real
``nn.Conv*`` / ``nn.Linear`` layers, so the attack engine can backpropagate through it
quickly.  BatchNormalization is folded into the preceding Conv or Gemm when that layer's
output feeds only the BN, and nodes that depend only on constants are evaluated once at
conversion time.  Every node is checked against the supported op set before anything is
built.  ``check_arcface_onnx`` validates a user-supplied ArcFace model against
onnxruntime.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import fx, nn

from models.errors import InvalidModelError, UnsupportedOpError

__all__ = ["SUPPORTED_OPS", "OnnxModule", "check_arcface_onnx", "convert_onnx"]

SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv",
        "Div", "Dropout", "Flatten", "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu",
        "MatMul", "MaxPool", "Mul", "Pad", "PRelu", "Relu", "Reshape", "Sigmoid", "Sub",
        "Transpose",
    }
)  # fmt: skip

_DEFAULT_DOMAINS = ("", "ai.onnx")
_ARCFACE_SHAPE = (3, 112, 112)

Value = Any  # an ``fx.Node`` (depends on the input), a constant ``torch.Tensor``, or None


class OnnxModule(nn.Module):
    """A converted ONNX graph: ``forward(x)`` maps the data input to the first output."""

    def __init__(
        self,
        net: fx.GraphModule,
        input_name: str,
        output_name: str,
        input_shape: tuple[int | None, ...],
        opset: int,
    ) -> None:
        super().__init__()
        self.net = net
        self.input_name = input_name
        self.output_name = output_name
        self.input_shape = input_shape
        self.opset = opset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on an NCHW float32 tensor (any batch size)."""
        out: torch.Tensor = self.net(x)
        return out


# --------------------------------------------------------------------------- runtime helpers
# Plain functions referenced from the generated fx code; they must stay module-level.


def _flatten(x: torch.Tensor, axis: int) -> torch.Tensor:
    if axis < 0:
        axis += x.dim()
    if axis == 1 and x.dim() >= 2:
        return torch.flatten(x, 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _reshape_keep_zeros(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """ONNX Reshape with ``allowzero=0``: a 0 copies the input's dimension."""
    return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])


def _transpose_reverse(x: torch.Tensor) -> torch.Tensor:
    return x.permute(*reversed(range(x.dim())))


def _global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def _same_pad(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    upper: bool,
    value: float,
) -> torch.Tensor:
    """Pad the spatial dims for ``auto_pad=SAME_UPPER/SAME_LOWER`` (kernel already dilated)."""
    torch_pads: list[int] = []
    spatial = x.shape[2:]
    for i in reversed(range(len(kernel))):
        size = int(spatial[i])
        out = -(-size // strides[i])
        total = max(0, (out - 1) * strides[i] + kernel[i] - size)
        small, big = total // 2, total - total // 2
        torch_pads += [small, big] if upper else [big, small]
    return F.pad(x, torch_pads, value=value)


def _gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor | None,
    alpha: float,
    beta: float,
    trans_a: bool,
    trans_b: bool,
) -> torch.Tensor:
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


def _div(a: Any, b: Any) -> Any:
    both_int = all(isinstance(v, torch.Tensor) and not v.is_floating_point() for v in (a, b))
    return torch.div(a, b, rounding_mode="trunc") if both_int else operator.truediv(a, b)


class _PRelu(nn.Module):
    """ONNX PRelu: ``slope`` broadcasts numpy-style; uses ``F.prelu`` when it is per-channel."""

    slope: torch.Tensor
    weight: torch.Tensor

    def __init__(self, slope: torch.Tensor) -> None:
        super().__init__()
        shape = list(slope.shape)
        while shape and shape[0] == 1 and len(shape) > 1:
            shape.pop(0)
        self.register_buffer("slope", slope.clone())
        self.register_buffer("weight", slope.reshape(-1).clone())
        if slope.numel() == 1:
            self.fast_rank = -1  # any rank
        elif all(s == 1 for s in shape[1:]):
            self.fast_rank = len(shape) + 1  # slope [C, 1, ..., 1] aligns with dim 1
        else:
            self.fast_rank = 0  # never

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_rank == -1 or x.dim() == self.fast_rank:
            return F.prelu(x, self.weight)
        return torch.where(x >= 0, x, x * self.slope)


# --------------------------------------------------------------------------- the builder


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else "")


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise InvalidModelError(f"ONNX model file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have no common public base
        raise InvalidModelError(f"cannot read {path} as an ONNX model: {exc}") from exc


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return int(entry.version)
    return 0


def _data_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inits = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name not in inits:
            return inp
    raise InvalidModelError("the model has no data input (every graph input is an initializer)")


def _dims(info: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    """Static dims of a value (None for symbolic ones), or None when the rank is unknown."""
    tensor_type = info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)


def _check_ops(graph: onnx.GraphProto) -> None:
    for node in graph.node:
        if node.domain not in _DEFAULT_DOMAINS:
            raise UnsupportedOpError(f"{node.domain}::{node.op_type}", _node_label(node))
        if node.op_type not in SUPPORTED_OPS:
            raise UnsupportedOpError(node.op_type, _node_label(node))


def _contains_node(args: Any) -> bool:
    if isinstance(args, fx.Node):
        return True
    if isinstance(args, (list, tuple)):
        return any(_contains_node(a) for a in args)
    if isinstance(args, dict):
        return any(_contains_node(a) for a in args.values())
    return False


_CONV: dict[int, Callable[..., Any]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_MAXPOOL: dict[int, Callable[..., nn.Module]] = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL: dict[int, Callable[..., nn.Module]] = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


class _Builder:
    """Walks the ONNX nodes in order and emits fx nodes (or folds constants)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph_proto = model.graph
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.inits = {t.name: t for t in self.graph_proto.initializer}
        self.values: dict[str, Value] = {}
        self.nodes = list(self.graph_proto.node)
        self.consumers: dict[str, list[int]] = {}  # tensor name -> indices of its users
        for index, node in enumerate(self.nodes):
            for name in node.input:
                self.consumers.setdefault(name, []).append(index)
        self.graph_outputs = {o.name for o in self.graph_proto.output}
        self.skip: set[int] = set()  # indices of nodes folded into an earlier one
        self.buffers: dict[int, fx.Node] = {}
        self.counter = 0

    # ---- values
    def get(self, name: str) -> Value:
        if name == "":
            return None
        if name in self.values:
            return self.values[name]
        if name in self.inits:
            array = numpy_helper.to_array(self.inits[name])
            tensor = torch.from_numpy(np.array(array, copy=True))
            self.values[name] = tensor
            return tensor
        raise InvalidModelError(f"tensor {name!r} is used before it is produced")

    def const(self, node: onnx.NodeProto, index: int, what: str) -> torch.Tensor | None:
        """Input ``index`` of ``node`` as a constant tensor (None when absent)."""
        if index >= len(node.input):
            return None
        value = self.get(node.input[index])
        if isinstance(value, fx.Node):
            raise UnsupportedOpError(
                f"{node.op_type} with a non-constant {what}", _node_label(node)
            )
        return value

    def _name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def _lift(self, arg: Any) -> Any:
        """Turn constant tensors inside ``arg`` into ``get_attr`` nodes."""
        if isinstance(arg, torch.Tensor):
            key = id(arg)
            if key not in self.buffers:
                name = self._name("const")
                self.root.register_buffer(name, arg)
                self.buffers[key] = self.graph.get_attr(name)
            return self.buffers[key]
        if isinstance(arg, list):
            return [self._lift(a) for a in arg]
        if isinstance(arg, tuple):
            return tuple(self._lift(a) for a in arg)
        return arg

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Value:
        """Emit ``fn(*args)``, or evaluate it now when no argument depends on the input."""
        if not _contains_node(args) and not _contains_node(kwargs):
            with torch.no_grad():
                return fn(*args, **kwargs)
        return self.graph.call_function(fn, self._lift(args), self._lift(kwargs))

    def module(self, mod: nn.Module, stem: str, x: Value) -> Value:
        """Emit ``mod(x)`` as a submodule call (or evaluate it for a constant ``x``)."""
        mod.eval()
        if not isinstance(x, fx.Node):
            with torch.no_grad():
                return mod(x)
        name = self._name(stem)
        self.root.add_module(name, mod)
        return self.graph.call_module(name, (x,))

    @staticmethod
    def scalar_or_tensor(value: Value) -> Value:
        """A one-element float constant as a Python float (cheaper to broadcast)."""
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and value.numel() == 1
            and value.dim() <= 1
        ):
            return float(value.reshape(()).item())
        return value

    # ---- BN folding
    def foldable_bn(self, output: str) -> onnx.NodeProto | None:
        """The BN that alone consumes ``output`` with constant parameters, if any.

        When one is found it is marked as skipped: the caller must fold it.
        """
        users = self.consumers.get(output, [])
        if len(users) != 1 or output in self.graph_outputs:
            return None
        bn = self.nodes[users[0]]
        if bn.op_type != "BatchNormalization" or bn.domain not in _DEFAULT_DOMAINS:
            return None
        if list(bn.input).count(output) != 1 or bn.input[0] != output:
            return None
        if any(o for o in bn.output[1:]) or _attrs(bn).get("spatial", 1) != 1:
            return None
        if any(isinstance(self.get(n), fx.Node) for n in bn.input[1:5]):
            return None
        self.skip.add(users[0])
        return bn

    def bn_affine(self, bn: onnx.NodeProto) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) in float64 such that ``bn(x) = x * scale + shift`` per channel."""
        gamma, beta, mean, var = (self.get(n).double() for n in bn.input[1:5])
        eps = float(_attrs(bn).get("epsilon", 1e-5))
        scale = gamma / torch.sqrt(var + eps)
        return scale, beta - mean * scale

    # ---- main loop
    def build(self) -> OnnxModule:
        _check_ops(self.graph_proto)
        data = _data_input(self.model)
        x = self.graph.placeholder("x")
        self.values[data.name] = x
        output_name = self.graph_proto.output[0].name if self.graph_proto.output else ""
        if not output_name:
            raise InvalidModelError("the model has no outputs")
        needed = self._needed(output_name)
        for index, node in enumerate(self.nodes):
            if index in self.skip or index not in needed:
                continue
            handler = getattr(self, f"op_{node.op_type}")
            outputs = handler(node, _attrs(node))
            if not isinstance(outputs, list):
                outputs = [outputs]
            for name, value in zip(node.output, outputs, strict=False):
                if name:
                    self.values[name] = value
        result = self.get(output_name)
        self.graph.output(self._lift(result))
        net = fx.GraphModule(self.root, self.graph, class_name="OnnxGraph")
        module = OnnxModule(net, data.name, output_name, _dims(data) or (), _opset(self.model))
        for param in module.parameters():
            param.requires_grad_(False)
        return module.eval()

    def _needed(self, output: str) -> set[int]:
        producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        needed: set[int] = set()
        stack = [output]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or name not in producer:
                continue
            seen.add(name)
            needed.add(producer[name])
            stack.extend(i for i in self.nodes[producer[name]].input if i)
        return needed

    def _unary(self, node: onnx.NodeProto) -> Value:
        return self.get(node.input[0])

    # ---- ops
    def op_Conv(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        x = self._unary(node)
        weight = self.const(node, 1, "weight")
        assert weight is not None
        bias = self.const(node, 2, "bias")
        k = weight.dim() - 2
        if k not in _CONV:
            raise UnsupportedOpError(f"Conv{k}d", _node_label(node))
        kernel = tuple(int(s) for s in weight.shape[2:])
        strides = tuple(a.get("strides", [1] * k))
        dilations = tuple(a.get("dilations", [1] * k))
        group = int(a.get("group", 1))
        x, padding = self._spatial_pads(node, a, x, kernel, strides, dilations, 0.0)
        weight64 = weight.double()
        bias64 = bias.double() if bias is not None else None
        bn = self.foldable_bn(node.output[0])
        if bn is not None:
            scale, shift = self.bn_affine(bn)
            weight64 = weight64 * scale.reshape(-1, *([1] * (k + 1)))
            bias64 = (bias64 if bias64 is not None else 0.0) * scale + shift
        conv = _CONV[k](
            weight.shape[1] * group,
            weight.shape[0],
            kernel,
            stride=strides,
            padding=padding,
            dilation=dilations,
            groups=group,
            bias=bias64 is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(weight64.to(weight.dtype))
            if bias64 is not None:
                assert conv.bias is not None
                conv.bias.copy_(bias64.to(weight.dtype))
        out = self.module(conv, "conv", x)
        if bn is not None:
            self.values[bn.output[0]] = out
        return out

    def _spatial_pads(
        self,
        node: onnx.NodeProto,
        a: dict[str, Any],
        x: Value,
        kernel: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        value: float,
        max_symmetric: tuple[int, ...] | None = None,
    ) -> tuple[Value, tuple[int, ...]]:
        """Resolve ``pads``/``auto_pad``: returns (possibly padded x, symmetric padding)."""
        k = len(kernel)
        auto_pad = a.get("auto_pad", "NOTSET")
        eff = tuple((kernel[i] - 1) * dilations[i] + 1 for i in range(k))
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            upper = auto_pad == "SAME_UPPER"
            if any(s != 1 for s in strides):
                return self.call(_same_pad, x, eff, strides, upper, value), (0,) * k
            totals = [e - 1 for e in eff]
            begins = [t // 2 if upper else t - t // 2 for t in totals]
            pads = [*begins, *(t - b for t, b in zip(totals, begins, strict=True))]
        elif auto_pad == "VALID":
            pads = [0] * (2 * k)
        elif auto_pad == "NOTSET":
            pads = list(a.get("pads", [0] * (2 * k)))
        else:
            raise UnsupportedOpError(f"{node.op_type}(auto_pad={auto_pad})", _node_label(node))
        begins, ends = pads[:k], pads[k:]
        symmetric = begins == ends
        if symmetric and max_symmetric is not None:
            symmetric = all(p <= m for p, m in zip(begins, max_symmetric, strict=True))
        if symmetric:
            return x, tuple(begins)
        torch_pads: list[int] = []
        for i in reversed(range(k)):
            torch_pads += [begins[i], ends[i]]
        return self.call(F.pad, x, torch_pads, value=value), (0,) * k

    def op_BatchNormalization(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        if any(o for o in node.output[1:]):
            raise UnsupportedOpError("BatchNormalization (training outputs)", _node_label(node))
        if a.get("spatial", 1) != 1:
            raise UnsupportedOpError("BatchNormalization(spatial=0)", _node_label(node))
        x = self._unary(node)
        gamma, beta, mean, var = (self.get(n) for n in node.input[1:5])
        eps = float(a.get("epsilon", 1e-5))
        return self.call(F.batch_norm, x, mean, var, gamma, beta, False, 0.0, eps)

    def op_Gemm(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        x = self._unary(node)
        b = self.get(node.input[1])
        c = self.get(node.input[2]) if len(node.input) > 2 else None
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        trans_a, trans_b = bool(a.get("transA", 0)), bool(a.get("transB", 0))
        linear_ok = isinstance(b, torch.Tensor) and b.dim() == 2 and isinstance(x, fx.Node)
        if linear_ok:
            weight = (b if trans_b else b.t()).double() * alpha  # [out, in]
            n_out = weight.shape[0]
            if c is None:
                bias: torch.Tensor | None = None
            elif isinstance(c, torch.Tensor) and c.numel() in (1, n_out) and c.dim() <= 2:
                if c.dim() == 2 and c.shape[0] != 1:
                    linear_ok = False
                bias = c.double().reshape(-1).expand(n_out) * beta
            else:
                linear_ok = False
        if not linear_ok:
            return self.call(_gemm, x, b, c, alpha, beta, trans_a, trans_b)
        bn = self.foldable_bn(node.output[0])
        if bn is not None:
            scale, shift = self.bn_affine(bn)
            weight = weight * scale[:, None]
            bias = (bias if bias is not None else 0.0) * scale + shift
        linear = nn.Linear(weight.shape[1], n_out, bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight.to(b.dtype))
            if bias is not None:
                assert linear.bias is not None
                linear.bias.copy_(bias.to(b.dtype))
        if trans_a:
            x = self.call(torch.t, x)
        out = self.module(linear, "linear", x)
        if bn is not None:
            self.values[bn.output[0]] = out
        return out

    def op_PRelu(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        x = self._unary(node)
        slope = self.get(node.input[1])
        if isinstance(slope, torch.Tensor):
            return self.module(_PRelu(slope), "prelu", x)
        return self.call(
            torch.where, self.call(operator.ge, x, 0), x, self.call(operator.mul, x, slope)
        )

    def _binary(self, node: onnx.NodeProto, fn: Callable[[Any, Any], Any]) -> Value:
        lhs, rhs = self.get(node.input[0]), self.get(node.input[1])
        if isinstance(lhs, fx.Node) or isinstance(rhs, fx.Node):
            lhs, rhs = self.scalar_or_tensor(lhs), self.scalar_or_tensor(rhs)
        return self.call(fn, lhs, rhs)

    def op_Add(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self._binary(node, operator.add)

    def op_Sub(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self._binary(node, operator.sub)

    def op_Mul(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self._binary(node, operator.mul)

    def op_Div(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        lhs, rhs = self.get(node.input[0]), self.get(node.input[1])
        if not isinstance(lhs, fx.Node) and not isinstance(rhs, fx.Node):
            return _div(lhs, rhs)
        return self._binary(node, operator.truediv)

    def op_MatMul(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self.call(torch.matmul, self.get(node.input[0]), self.get(node.input[1]))

    def op_Relu(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self.call(torch.relu, self._unary(node))

    def op_LeakyRelu(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self.call(F.leaky_relu, self._unary(node), float(a.get("alpha", 0.01)))

    def op_Sigmoid(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self.call(torch.sigmoid, self._unary(node))

    def op_Clip(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        x = self._unary(node)
        lo: float | None = a.get("min")
        hi: float | None = a.get("max")
        for index, slot in ((1, "min"), (2, "max")):
            if index < len(node.input) and node.input[index]:
                bound = self.const(node, index, slot)
                assert bound is not None
                value = float(bound.reshape(()).item())
                lo, hi = (value, hi) if slot == "min" else (lo, value)
        if lo is None and hi is None:
            return x
        return self.call(torch.clamp, x, lo, hi)

    def op_Flatten(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self.call(_flatten, self._unary(node), int(a.get("axis", 1)))

    def op_Reshape(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        x = self._unary(node)
        shape_t = self.const(node, 1, "shape")
        assert shape_t is not None
        shape = tuple(int(s) for s in shape_t.reshape(-1).tolist())
        if 0 in shape and not a.get("allowzero", 0):
            return self.call(_reshape_keep_zeros, x, shape)
        return self.call(torch.reshape, x, shape)

    def op_Transpose(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        x = self._unary(node)
        if "perm" not in a:
            return self.call(_transpose_reverse, x)
        return self.call(torch.permute, x, tuple(int(p) for p in a["perm"]))

    def op_Concat(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        parts = [self.get(n) for n in node.input if n]
        return self.call(torch.cat, parts, int(a["axis"]))

    def _pool_geometry(
        self, node: onnx.NodeProto, a: dict[str, Any]
    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        kernel = tuple(int(s) for s in a["kernel_shape"])
        k = len(kernel)
        if k not in _MAXPOOL:
            raise UnsupportedOpError(f"{node.op_type}{k}d", _node_label(node))
        strides = tuple(int(s) for s in a.get("strides", [1] * k))
        dilations = tuple(int(s) for s in a.get("dilations", [1] * k))
        return kernel, strides, dilations

    def op_MaxPool(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOpError("MaxPool (indices output)", _node_label(node))
        kernel, strides, dilations = self._pool_geometry(node, a)
        half = tuple(kk // 2 for kk in kernel)
        x, padding = self._spatial_pads(
            node, a, self._unary(node), kernel, strides, dilations, -math.inf, half
        )
        pool = _MAXPOOL[len(kernel)](
            kernel, strides, padding, dilations, ceil_mode=bool(a.get("ceil_mode", 0))
        )
        return self.module(pool, "maxpool", x)

    def op_AveragePool(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        kernel, strides, dilations = self._pool_geometry(node, a)
        if any(d != 1 for d in dilations):
            raise UnsupportedOpError("AveragePool (dilations)", _node_label(node))
        include_pad = bool(a.get("count_include_pad", 0))
        x = self._unary(node)
        half = tuple(kk // 2 for kk in kernel)
        if include_pad:
            x, padding = self._spatial_pads(node, a, x, kernel, strides, dilations, 0.0, half)
        else:
            pads_before = len(self.graph.nodes)
            x, padding = self._spatial_pads(node, a, x, kernel, strides, dilations, 0.0, half)
            if len(self.graph.nodes) != pads_before:
                raise UnsupportedOpError(
                    "AveragePool (asymmetric pads without count_include_pad)", _node_label(node)
                )
        pool = _AVGPOOL[len(kernel)](
            kernel,
            strides,
            padding,
            ceil_mode=bool(a.get("ceil_mode", 0)),
            count_include_pad=include_pad,
        )
        return self.module(pool, "avgpool", x)

    def op_GlobalAveragePool(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self.call(_global_avg_pool, self._unary(node))

    def op_Pad(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        x = self._unary(node)
        mode = a.get("mode", "constant")
        if mode not in _PAD_MODES:
            raise UnsupportedOpError(f"Pad(mode={mode})", _node_label(node))
        if "pads" in a:
            pads = [int(p) for p in a["pads"]]
            value = float(a.get("value", 0.0))
        else:
            pads_t = self.const(node, 1, "pads")
            assert pads_t is not None
            pads = [int(p) for p in pads_t.reshape(-1).tolist()]
            value_t = self.const(node, 2, "constant_value") if len(node.input) > 2 else None
            value = float(value_t.reshape(()).item()) if value_t is not None else 0.0
        n = len(pads) // 2
        axes = list(range(n))
        axes_t = self.const(node, 3, "axes") if len(node.input) > 3 else None
        if axes_t is not None:
            axes = [int(v) for v in axes_t.reshape(-1).tolist()]
            if any(ax < 0 for ax in axes):
                raise UnsupportedOpError("Pad (negative axes)", _node_label(node))
            full = [0] * (2 * (max(axes) + 1))
            rank = max(axes) + 1
            for i, ax in enumerate(axes):
                full[ax], full[rank + ax] = pads[i], pads[n + i]
            pads, n = full, rank
        torch_pads: list[int] = []
        for i in reversed(range(n)):
            torch_pads += [pads[i], pads[n + i]]
        while torch_pads and torch_pads[-2:] == [0, 0]:  # leading dims without padding
            torch_pads = torch_pads[:-2]
        if not torch_pads:
            return x
        if mode == "constant":
            return self.call(F.pad, x, torch_pads, value=value)
        return self.call(F.pad, x, torch_pads, mode=_PAD_MODES[mode])

    def op_Identity(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return self._unary(node)

    def op_Dropout(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise UnsupportedOpError("Dropout (mask output)", _node_label(node))
        return self._unary(node)

    def op_Constant(self, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
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
        raise UnsupportedOpError(f"Constant({', '.join(a) or 'empty'})", _node_label(node))


# --------------------------------------------------------------------------- public API


def convert_onnx(model: str | Path | onnx.ModelProto) -> OnnxModule:
    """Convert an ONNX model (path or proto) into an eval-mode, frozen ``OnnxModule``.

    Raises ``UnsupportedOpError`` (before building anything) when a node's op is outside
    ``SUPPORTED_OPS``, and ``InvalidModelError`` when the file or graph is unusable.
    """
    proto = _load(model)
    if not proto.graph.node:
        raise InvalidModelError("the ONNX graph has no nodes")
    return _Builder(proto).build()


def _describe(dims: tuple[int | None, ...] | None) -> str:
    if dims is None:
        return "unknown shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def check_arcface_onnx(path: str | Path) -> dict[str, Any]:
    """Check a user-supplied ArcFace ONNX model and return its basic facts.

    The model needs one float data input ``[N or dynamic, 3, 112, 112]`` and a 2-D
    embedding output, and the converted torch module must match onnxruntime within 1e-4.
    Returns ``{"embedding_size", "max_abs_diff", "opset"}``.
    """
    import onnxruntime as ort

    proto = _load(path)
    inits = {t.name for t in proto.graph.initializer}
    data_inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(data_inputs) != 1:
        names = ", ".join(i.name for i in data_inputs) or "none"
        raise InvalidModelError(
            f"an ArcFace model needs exactly one data input; this one has {len(data_inputs)}"
            f" ({names})"
        )
    data = data_inputs[0]
    dims = _dims(data)
    expected = "[N, 3, 112, 112] (N may be dynamic)"
    if (
        dims is None
        or len(dims) != 4
        or any(d is not None and d != e for d, e in zip(dims[1:], _ARCFACE_SHAPE, strict=True))
    ):
        raise InvalidModelError(
            f"input {data.name!r} has shape {_describe(dims)}; an ArcFace model needs {expected}"
        )
    elem = data.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise InvalidModelError(
            f"input {data.name!r} has type {onnx.TensorProto.DataType.Name(elem)}; "
            "an ArcFace model needs FLOAT"
        )
    module = convert_onnx(proto)

    batch = dims[0] if dims[0] else 2
    rng = np.random.default_rng(0)
    sample = rng.uniform(-1.0, 1.0, size=(batch, *_ARCFACE_SHAPE)).astype(np.float32)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # hide "initializer appears in graph inputs" warnings
        session = ort.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        reference = np.asarray(session.run(None, {data.name: sample})[0])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidModelError(f"onnxruntime cannot run the model: {exc}") from exc
    if reference.ndim != 2:
        raise InvalidModelError(
            f"the first output has shape {list(reference.shape)}; "
            "an ArcFace model must produce a 2-D embedding [N, D]"
        )
    with torch.no_grad():
        ours = module(torch.from_numpy(sample)).numpy()
    if ours.shape != reference.shape:
        raise InvalidModelError(
            f"converted model output shape {list(ours.shape)} differs from onnxruntime's "
            f"{list(reference.shape)}"
        )
    diff = float(np.max(np.abs(ours.astype(np.float64) - reference.astype(np.float64))))
    if not diff <= 1e-4:
        raise InvalidModelError(
            f"converted model disagrees with onnxruntime: max abs diff {diff:.3g} > 1e-4"
        )
    return {"embedding_size": int(reference.shape[1]), "max_abs_diff": diff, "opset": module.opset}
